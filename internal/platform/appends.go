package platform

import (
	"net/http"
	"strings"

	"github.com/vitrine-dev/vitrine/internal/httpapi"
)

// The platform's logs are appended only by the component that owns each:
// releases by Publish (POST /v1/builds), residency policies by the start
// and by relocations, access records by each region's access gateway,
// aggregate exchange, commitments and relocations. Each checks what it appends and
// signs what must be signed; a generic POST /logs/<name>/add would let
// anyone holding the operator token log bytes that no owner made — a
// policy note that stops the next start, or an access record under any
// principal's name. `vitrine log serve` keeps its generic /add: its log
// has no owner but the client holding its token.

// appendOwner says who appends to the named log of the platform, and how.
func appendOwner(name string) string {
	switch {
	case name == "release":
		return "the release log is appended only by the platform when it publishes a release: POST " + BuildPath + " (operator token) builds and publishes one"
	case name == "review":
		return "the review log is appended only by the platform when an auditor records a review: POST " + ReviewPath + " (an auditor principal's token)"
	case name == "policy":
		return "the policy log is appended only by the platform: a new residency policy version is activated by starting `vitrine up` with it (--config), or by a relocation (POST /v1/relocations)"
	}
	if region, ok := strings.CutPrefix(name, "access-"); ok {
		return "the access log " + name + " is appended only by region " + region + ": its access gateway logs every read, export and deletion (/regions/" + region + "/v1/records), and the region logs the aggregates it gives other regions, its commitments (POST /regions/" + region + "/v1/commitments) and relocations (POST /v1/relocations)"
	}
	return "the log " + name + " is appended only by the platform component that owns it"
}

// refuseAppend answers every request to /logs/<name>/add of the platform:
// 403, whatever the method and token, and the log is unchanged.
func refuseAppend(name string) http.HandlerFunc {
	msg := appendOwner(name) + "; there is no generic append to the platform's logs (a standalone `vitrine log serve` has one)"
	return func(w http.ResponseWriter, r *http.Request) {
		httpapi.Error(w, http.StatusForbidden, msg)
	}
}
