package platform

import (
	"net/http"
	"strings"
	"testing"
)

// TestRegisterRefusesDuplicateKeys: {"country":"DE","country":"RU"} once
// registered an endpoint with a Moscow token (encoding/json keeps the
// last); a member named twice, in any case, is now a 400 and registers
// nothing.
func TestRegisterRefusesDuplicateKeys(t *testing.T) {
	p := start(t, t.TempDir())
	defer stop(t, p)
	for _, body := range []string{`{"country":"DE","country":"RU"}`, `{"country":"DE","Country":"RU"}`, `{"country":"DE"}}`} {
		code, answer := httpDo(t, http.MethodPost, p.URL()+"/v1/endpoints", p.operatorToken, []byte(body))
		if code != http.StatusBadRequest || strings.Contains(string(answer), "token") {
			t.Errorf("POST /v1/endpoints %s = %d %s, want 400 and no token", body, code, answer)
		}
	}
	if code, answer := httpDo(t, http.MethodPost, p.URL()+"/v1/endpoints", p.operatorToken, []byte(`{"country":"DE"}`)); code != http.StatusOK || !strings.Contains(string(answer), `"zurich"`) {
		t.Errorf("POST /v1/endpoints DE = %d %s, want 200 and region zurich", code, answer)
	}
}
