package release

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	provenance "github.com/in-toto/attestation/go/predicates/provenance/v1"
	intoto "github.com/in-toto/attestation/go/v1"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The types the documents carry.
const (
	// PayloadType is the DSSE payload type of an in-toto Statement.
	PayloadType = "application/vnd.in-toto+json"
	// ProvenanceType is the predicate type of SLSA Provenance v1.
	ProvenanceType = "https://slsa.dev/provenance/v1"
	// BuildType names Vitrine's conveyer builds: externalParameters holds
	// the recipe, internalParameters the toolchain and environment, and
	// the source archive is the first resolved dependency.
	BuildType = "https://vitrine.dev/conveyer/build/v1"
)

// Artifact is one file a release ships.
type Artifact struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"` // 64 lower-case hex digits
}

// Build is what a conveyer build records for the provenance.
type Build struct {
	// Recipe is the build recipe, as JSON: the external parameters.
	Recipe json.RawMessage
	// Source names the source (a repository URL and commit, or a
	// directory) and Archive is the SHA-256 of its archived tar.
	Source, Archive string
	// Toolchain is the Go version, Env the environment the build ran
	// with: the internal parameters.
	Toolchain string
	Env       map[string]string
	// BuilderID identifies the conveyer (a URI), InvocationID this build.
	BuilderID, InvocationID string
	Started, Finished       time.Time
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Statement returns the in-toto Statement v1, as JSON, whose subjects are
// the artifacts and whose predicate is the SLSA Provenance v1 of b. Both
// pass in-toto's own validation.
func Statement(artifacts []Artifact, b *Build) ([]byte, error) {
	if len(artifacts) == 0 {
		return nil, errors.New("a release has at least one artifact")
	}
	if !hexSHA256.MatchString(b.Archive) {
		return nil, fmt.Errorf("source archive digest %q is not 64 hex digits", b.Archive)
	}
	ext := &structpb.Struct{}
	if err := protojson.Unmarshal([]byte(`{"recipe":`+string(b.Recipe)+`}`), ext); err != nil {
		return nil, fmt.Errorf("recipe: %w", err)
	}
	env := map[string]any{}
	for k, v := range b.Env {
		env[k] = v
	}
	internal, err := structpb.NewStruct(map[string]any{"toolchain": b.Toolchain, "env": env})
	if err != nil {
		return nil, err
	}
	p := &provenance.Provenance{
		BuildDefinition: &provenance.BuildDefinition{
			BuildType:          BuildType,
			ExternalParameters: ext,
			InternalParameters: internal,
			ResolvedDependencies: []*intoto.ResourceDescriptor{{
				Uri:    b.Source,
				Digest: map[string]string{"sha256": b.Archive},
			}},
		},
		RunDetails: &provenance.RunDetails{
			Builder: &provenance.Builder{Id: b.BuilderID},
			Metadata: &provenance.BuildMetadata{
				InvocationId: b.InvocationID,
				StartedOn:    timestamppb.New(b.Started),
				FinishedOn:   timestamppb.New(b.Finished),
			},
		},
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	pj, err := protojson.Marshal(p)
	if err != nil {
		return nil, err
	}
	pred := &structpb.Struct{}
	if err := protojson.Unmarshal(pj, pred); err != nil {
		return nil, err
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, PredicateType: ProvenanceType, Predicate: pred}
	for _, a := range artifacts {
		if a.Name == "" || !hexSHA256.MatchString(a.SHA256) {
			return nil, fmt.Errorf("artifact %q: want a name and a 64-hex-digit sha256", a.Name)
		}
		st.Subject = append(st.Subject, &intoto.ResourceDescriptor{Name: a.Name, Digest: map[string]string{"sha256": a.SHA256}})
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	return protojson.MarshalOptions{UseProtoNames: false}.Marshal(st)
}

// Sign signs statement as a DSSE envelope with s and returns the envelope
// as JSON.
func Sign(ctx context.Context, s Signer, statement []byte) ([]byte, error) {
	es, err := dsse.NewEnvelopeSigner(s)
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, PayloadType, statement)
	if err != nil {
		return nil, fmt.Errorf("signing provenance: %w", err)
	}
	return json.Marshal(env)
}

// Verified is what Verify read from a good envelope.
type Verified struct {
	Statement *intoto.Statement
	// Subjects are the artifacts the statement names.
	Subjects []Artifact
}

// Verify checks envelope, as JSON, under the release key: the payload
// type, the signature (go-securesystemslib's verifier), and that the
// payload is a valid in-toto Statement v1 of SLSA Provenance v1. The error
// says which check failed.
func Verify(ctx context.Context, envelope []byte, key PublicKey) (*Verified, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("envelope: not a DSSE envelope: %w", err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("envelope: payload type %q, want %q", env.PayloadType, PayloadType)
	}
	ev, err := dsse.NewEnvelopeVerifier(key)
	if err != nil {
		return nil, err
	}
	_, payload, err := ev.VerifyAndDecode(ctx, &env)
	if err != nil {
		return nil, fmt.Errorf("envelope: signature: %w", err)
	}
	st := &intoto.Statement{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(payload, st); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("statement: %w", err)
	}
	if st.PredicateType != ProvenanceType {
		return nil, fmt.Errorf("statement: predicate type %q, want %q", st.PredicateType, ProvenanceType)
	}
	v := &Verified{Statement: st}
	for _, s := range st.Subject {
		v.Subjects = append(v.Subjects, Artifact{Name: s.Name, SHA256: s.Digest["sha256"]})
	}
	return v, nil
}

// Digest is "sha256:" and the hex SHA-256 of b: how the release log names
// an envelope.
func Digest(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:])
}

// BuildRecord is what the statement's SLSA provenance says of the build, as a
// conveyer writes it (see Statement): its build type, the recipe
// (external parameters), the toolchain (internal parameters), the source
// and its archive's SHA-256 (the first resolved dependency), the builder,
// the invocation and its times.
type BuildRecord struct {
	BuildType    string
	Recipe       json.RawMessage
	Toolchain    string
	Source       string
	SourceSHA256 string // "" if the provenance names no source archive
	Builder      string
	Invocation   string
	Started      string // RFC 3339, as the provenance writes them
	Finished     string
}

// Build decodes what v's provenance says of the build.
func (v *Verified) Build() (*BuildRecord, error) {
	pj, err := protojson.Marshal(v.Statement.Predicate)
	if err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	var pred struct {
		BuildDefinition struct {
			BuildType          string `json:"buildType"`
			ExternalParameters struct {
				Recipe json.RawMessage `json:"recipe"`
			} `json:"externalParameters"`
			InternalParameters struct {
				Toolchain string `json:"toolchain"`
			} `json:"internalParameters"`
			ResolvedDependencies []struct {
				URI    string            `json:"uri"`
				Digest map[string]string `json:"digest"`
			} `json:"resolvedDependencies"`
		} `json:"buildDefinition"`
		RunDetails struct {
			Builder struct {
				ID string `json:"id"`
			} `json:"builder"`
			Metadata struct {
				InvocationID string `json:"invocationId"`
				StartedOn    string `json:"startedOn"`
				FinishedOn   string `json:"finishedOn"`
			} `json:"metadata"`
		} `json:"runDetails"`
	}
	if err := json.Unmarshal(pj, &pred); err != nil {
		return nil, fmt.Errorf("provenance: %w", err)
	}
	bd, rd := pred.BuildDefinition, pred.RunDetails
	b := &BuildRecord{BuildType: bd.BuildType, Recipe: bd.ExternalParameters.Recipe, Toolchain: bd.InternalParameters.Toolchain,
		Builder: rd.Builder.ID, Invocation: rd.Metadata.InvocationID, Started: rd.Metadata.StartedOn, Finished: rd.Metadata.FinishedOn}
	if len(bd.ResolvedDependencies) > 0 {
		b.Source, b.SourceSHA256 = bd.ResolvedDependencies[0].URI, bd.ResolvedDependencies[0].Digest["sha256"]
	}
	return b, nil
}
