package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vitrine-dev/vitrine/internal/cli"
	"net/url"
	"os"
	"strings"
)

func runPrincipalCreate(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "principal create", "[--url URL] [--token FILE] --id ROLE:NAME --location CC --regions R1,R2 [--expires 720h] [--out FILE]")
	base := fs.String("url", cli.DefaultPlatform(), "base URL of the platform")
	tokenFile := fs.String("token", cli.DefaultOperatorToken, "file holding the operator token (<data>/operator.token of 'vitrine up')")
	id := fs.String("id", "", "the principal's id, <role>:<name>, e.g. analyst:jdoe")
	location := fs.String("location", "", "the principal's home country (ISO 3166-1 alpha-2)")
	regions := fs.String("regions", "", "comma-separated regions the principal may act in")
	expires := fs.String("expires", "", "when the principal's token stops working: a duration from now (720h) or an RFC 3339 time; default one year")
	out := fs.String("out", "", "write the principal's token to this file (mode 0600) instead of standard output")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	role, _, ok := strings.Cut(*id, ":")
	if !ok || *location == "" || *regions == "" {
		fs.Usage()
		return errors.New("--id ROLE:NAME, --location and --regions are required")
	}
	tok, err := cli.ReadToken(*tokenFile, "the operator token")
	if err != nil {
		return err
	}
	req := map[string]any{"id": *id, "role": role, "location": *location, "regions": cli.SplitList(*regions)}
	if *expires != "" {
		req["expires"] = *expires
	}
	body, _ := json.Marshal(req)
	var resp struct {
		Token string `json:"token"`
	}
	if err := call(ctx, "POST", strings.TrimSuffix(*base, "/")+"/v1/principals", tok, body, &resp); err != nil {
		return err
	}
	if *out != "" {
		if err := os.WriteFile(*out, []byte(resp.Token+"\n"), 0o600); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "created %s; token in %s\n", *id, *out)
		return nil
	}
	fmt.Fprintln(e.Stdout, resp.Token)
	return nil
}

func runPrincipalRevoke(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "principal revoke", "[--url URL] [--token FILE] --id ROLE:NAME")
	base := fs.String("url", cli.DefaultPlatform(), "base URL of the platform")
	tokenFile := fs.String("token", cli.DefaultOperatorToken, "file holding the operator token (<data>/operator.token of 'vitrine up')")
	id := fs.String("id", "", "the principal's id, <role>:<name>")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *id == "" {
		fs.Usage()
		return errors.New("--id ROLE:NAME is required")
	}
	tok, err := cli.ReadToken(*tokenFile, "the operator token")
	if err != nil {
		return err
	}
	var resp struct {
		Revoked string `json:"revoked"`
	}
	if err := call(ctx, "DELETE", strings.TrimSuffix(*base, "/")+"/v1/principals/"+url.PathEscape(*id), tok, nil, &resp); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "revoked %s; its token no longer works\n", resp.Revoked)
	return nil
}
