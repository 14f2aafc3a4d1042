package logstore

import (
	"errors"
	"net/url"
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

		{in: "s3://logs?mysql=vitrine@db.example:3306/seq", want: Location{Kind: "aws", Bucket: "logs", User: "vitrine", Host: "db.example", Port: 3306, Database: "seq"}},
		{in: "s3://vitrine-logs/prod/release?mysql=root@127.0.0.1:3306/seq&endpoint=http://127.0.0.1:9000&region=eu-west-1&credentials_file=/etc/vitrine/s3&password_file=/etc/vitrine/mysql.pass&tls=true",
			want: Location{Kind: "aws", Bucket: "vitrine-logs", Prefix: "prod/release", User: "root", Host: "127.0.0.1", Port: 3306, Database: "seq",
				Endpoint: "http://127.0.0.1:9000", Region: "eu-west-1", CredentialsFile: "/etc/vitrine/s3", PasswordFile: "/etc/vitrine/mysql.pass", TLS: "true"}},
		{in: "s3://logs.example.com?endpoint=https://s3.example.com/&mysql=u@[::1]:3307/d",
			want: Location{Kind: "aws", Bucket: "logs.example.com", User: "u", Host: "::1", Port: 3307, Database: "d", Endpoint: "https://s3.example.com"}},
		{in: "s3://AKIAEXAMPLE:hunter2@logs?mysql=root@h:1/d", wantErr: "password does not belong"},
		{in: "s3://AKIAEXAMPLE@logs?mysql=root@h:1/d", wantErr: "password does not belong"},
		{in: "s3://logs?mysql=root:hunter2@h:1/d", wantErr: "password does not belong"},
		{in: "s3://logs?mysql=root%3Ahunter2@h:1/d", wantErr: "password does not belong"},
		{in: "s3://logs?mysql=root@h:1/d&endpoint=http://key:hunter2@h:9000", wantErr: "password does not belong"},
		{in: "s3://logs", wantErr: "no mysql="},
		{in: "s3://logs?endpoint=http://127.0.0.1:9000", wantErr: "no mysql="},
		{in: "s3://Logs?mysql=root@h:1/d", wantErr: "bucket"},
		{in: "s3://lo?mysql=root@h:1/d", wantErr: "bucket"},
		{in: "s3://logs:9000?mysql=root@h:1/d", wantErr: "bucket"},
		{in: "s3://-logs?mysql=root@h:1/d", wantErr: "bucket"},
		{in: "s3://logs/a//b?mysql=root@h:1/d", wantErr: "prefix"},
		{in: "s3://logs/a/?mysql=root@h:1/d", wantErr: "prefix"},
		{in: "s3://logs/../x?mysql=root@h:1/d", wantErr: "prefix"},
		{in: "s3://logs/a%20b?mysql=root@h:1/d", wantErr: "prefix"},
		{in: "s3://logs?mysql=root@h:1/d?tls=true", wantErr: "mysql="},
		{in: "s3://logs?mysql=h:1/d", wantErr: "no user"},
		{in: "s3://logs?mysql=root@h/d", wantErr: "HOST:PORT"},
		{in: "s3://logs?mysql=root@h:1/d&endpoint=ftp://h", wantErr: "endpoint="},
		{in: "s3://logs?mysql=root@h:1/d&endpoint=http://h:9000/path", wantErr: "endpoint="},
		{in: "s3://logs?mysql=root@h:1/d&endpoint=http://h:0", wantErr: "port"},
		{in: "s3://logs?mysql=root@h:1/d&endpoint=127.0.0.1:9000", wantErr: "endpoint="},
		{in: "s3://logs?mysql=root@h:1/d&region=EU", wantErr: "region"},
		{in: "s3://logs?mysql=root@h:1/d&credentials_file=rel", wantErr: "absolute"},
		{in: "s3://logs?mysql=root@h:1/d&password_file=rel", wantErr: "absolute"},
		{in: "s3://logs?mysql=root@h:1/d&aws_secret_access_key=x", wantErr: "unknown parameter"},
		{in: "s3://logs?mysql=root@h:1/d&mysql=root@h:1/e", wantErr: "2 times"},
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
	// An s3:// location reads the way it is written.
	const s3 = "s3://vitrine-logs/prod/release?mysql=root@127.0.0.1:3306/seq&endpoint=http://127.0.0.1:9000&region=eu-west-1&credentials_file=/etc/vitrine/s3&password_file=/etc/vitrine/mysql.pass&tls=true"
	if loc, err := ParseLocation(s3); err != nil || loc.String() != s3 {
		t.Errorf("ParseLocation(%q).String() = %q, %v; want it unchanged", s3, loc.String(), err)
	}
}

// secrets returns what s holds in the place of a password: the text
// between ':' and '@' in each USER:PASSWORD@, unescaped or not.
func secrets(s string) []string {
	var out []string
	for _, v := range []string{s, unescape(s)} {
		for j := 0; j < len(v); j++ {
			if v[j] != '@' {
				continue
			}
			i := strings.LastIndexAny(v[:j], "/=&?") + 1
			if k := strings.Index(v[i:j], ":"); k >= 0 {
				out = append(out, v[i+k+1:j])
			}
		}
	}
	return out
}

func unescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// FuzzParseLocation checks that ParseLocation never panics, never shows a
// password it refused, and that what it accepts round-trips exactly through
// String.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"journal", "mysql://vitrine@db.example:3306/logs", "mysql://root@127.0.0.1:3306/test?password_file=/p&tls=skip-verify",
		"mysql://u@[::1]:3307/d", "mysql://root:pw@h:1/d", "mysql://%zz@h:1/d", "mysql://u@h:01/d",
		"s3://logs?mysql=vitrine@db.example:3306/seq", "s3://logs/a/b?mysql=u@[::1]:3307/d&endpoint=http://127.0.0.1:9000&region=eu-west-1&credentials_file=/c&password_file=/p&tls=true",
		"s3://KEY:secret@logs?mysql=u@h:1/d", "s3://logs?mysql=u:secret@h:1/d", "s3://logs?mysql=u@h:1/d&endpoint=http://k:secret@h:1",
		"s3://logs?mysql=u%40x@h:1/d&endpoint=https://[::1]:9000/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := ParseLocation(s)
		if err != nil {
			if errors.Is(err, ErrPasswordInLocation) {
				for _, secret := range secrets(s) {
					if len(secret) > 3 && strings.Contains(err.Error(), secret) {
						t.Fatalf("error shows the password %q: %v", secret, err)
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
		if loc.Kind == "mysql" || loc.Kind == "aws" {
			if _, err := loc.dsn(""); err != nil {
				t.Fatalf("accepted %q but cannot make a DSN: %v", s, err)
			}
		}
	})
}
