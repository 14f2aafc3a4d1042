package logstore

import (
	"errors"
	"strings"
	"testing"
)

func TestParseLocation(t *testing.T) {
	tests := []struct {
		in      string
		want    Location
		wantErr string
	}{
		{in: "journal", want: Location{Kind: Journal}},
		{in: "mysql://vitrine@db.example:3306/logs", want: Location{Kind: "mysql", User: "vitrine", Host: "db.example", Port: 3306, Database: "logs"}},
		{in: "mysql://root@127.0.0.1:3306/test?password_file=/etc/vitrine/mysql.pass&tls=true",
			want: Location{Kind: "mysql", User: "root", Host: "127.0.0.1", Port: 3306, Database: "test", PasswordFile: "/etc/vitrine/mysql.pass", TLS: "true"}},
		{in: "mysql://u@[::1]:3307/d", want: Location{Kind: "mysql", User: "u", Host: "::1", Port: 3307, Database: "d"}},
		{in: "mysql://root:hunter2@127.0.0.1:3306/test", wantErr: "password does not belong"},
		{in: "mysql://root:@127.0.0.1:3306/test", wantErr: "password does not belong"},
		{in: "mysql://127.0.0.1:3306/test", wantErr: "no user"},
		{in: "mysql://root@127.0.0.1/test", wantErr: "HOST:PORT"},
		{in: "mysql://root@127.0.0.1:0/test", wantErr: "port"},
		{in: "mysql://root@127.0.0.1:99999/test", wantErr: "port"},
		{in: "mysql://root@127.0.0.1:3306/", wantErr: "database name"},
		{in: "mysql://root@127.0.0.1:3306/a;drop", wantErr: "database name"},
		{in: "mysql://root@127.0.0.1:3306/a/b", wantErr: "database name"},
		{in: "mysql://root@127.0.0.1:3306/test?sslmode=off", wantErr: "unknown parameter"},
		{in: "mysql://root@127.0.0.1:3306/test?password_file=rel", wantErr: "absolute"},
		{in: "mysql://root@127.0.0.1:3306/test?tls=maybe", wantErr: "tls"},
		{in: "mysql://root@127.0.0.1:3306/test?tls=true&tls=false", wantErr: "2 times"},
		{in: "postgres://root@127.0.0.1:5432/test", wantErr: "want \"journal\""},
		{in: "root@tcp(127.0.0.1:3306)/test", wantErr: "want \"journal\""},
		{in: "", wantErr: "want \"journal\""},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseLocation(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseLocation(%q) = %+v, %v; want an error saying %q", tc.in, got, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Errorf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseLocation(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Fatalf("ParseLocation(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			again, err := ParseLocation(got.String())
			if err != nil || again != got {
				t.Fatalf("ParseLocation(%q) (its String) = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
	if _, err := ParseLocation("mysql://a:b@h:1/d"); !errors.Is(err, ErrPasswordInLocation) {
		t.Errorf("a password in the URL: %v, want ErrPasswordInLocation", err)
	}
}

// FuzzParseLocation checks that ParseLocation never panics, never shows a
// password it refused, and that what it accepts round-trips exactly through
// String.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"journal", "mysql://vitrine@db.example:3306/logs", "mysql://root@127.0.0.1:3306/test?password_file=/p&tls=skip-verify",
		"mysql://u@[::1]:3307/d", "mysql://root:pw@h:1/d", "mysql://%zz@h:1/d", "mysql://u@h:01/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := ParseLocation(s)
		if err != nil {
			if errors.Is(err, ErrPasswordInLocation) && strings.Contains(err.Error(), "@") {
				if i := strings.Index(s, "://"); i >= 0 {
					if j := strings.LastIndex(s, "@"); j > i {
						userinfo := s[i+3 : j]
						if k := strings.Index(userinfo, ":"); k >= 0 && len(userinfo[k+1:]) > 3 && strings.Contains(err.Error(), userinfo[k+1:]) {
							t.Fatalf("error shows the password %q: %v", userinfo[k+1:], err)
						}
					}
				}
			}
			return
		}
		again, err := ParseLocation(loc.String())
		if err != nil {
			t.Fatalf("String of an accepted location %q = %q, which does not parse: %v", s, loc.String(), err)
		}
		if again != loc {
			t.Fatalf("round trip of %q: %+v, then %+v", s, loc, again)
		}
		if loc.Kind == "mysql" {
			if _, err := loc.dsn(""); err != nil {
				t.Fatalf("accepted %q but cannot make a DSN: %v", s, err)
			}
		}
	})
}
