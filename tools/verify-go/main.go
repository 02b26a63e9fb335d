// Command verify-go checks TRACE-claim addenda of deny-rate-killswitch
// offline, written from docs/spec.md (sections 4, 5, 6, 9) and
// docs/regulators.md only.
//
//	verify-go --jwks JWKS_FILE ADDENDA_FILE
//
// Standard output: one line per non-blank addendum line,
//
//	OK <line> <stream> <sequence_number>
//	FAIL <line> <code>[,<code>...] <code>: <message>[; <code>: <message>...]
//
// (<stream> is written as is when it is printable and has no white space,
// otherwise as a canonical JSON string). Standard error: each stream's tip.
// Exit status: 0 all valid, 1 any finding, 2 usage error (including an
// unreadable or invalid JWKS and an unreadable ADDENDA file).
package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"
)

const usage = "usage: verify-go --jwks JWKS_FILE ADDENDA_FILE"

func displayStream(s []rune) string {
	if len(s) == 0 {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || (r >= 0xD800 && r <= 0xDFFF) {
			return canonString(s)
		}
	}
	return string(s)
}

func oneLine(s string) string {
	return strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(s)
}

func run(args []string, stdout, stderr io.Writer) int {
	var jwksPath string
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--jwks":
			if i+1 >= len(args) {
				fmt.Fprintln(stderr, "--jwks needs a file")
				fmt.Fprintln(stderr, usage)
				return 2
			}
			i++
			jwksPath = args[i]
		case strings.HasPrefix(a, "--jwks="):
			jwksPath = strings.TrimPrefix(a, "--jwks=")
		case a == "-h" || a == "--help":
			fmt.Fprintln(stdout, usage)
			return 0
		case a == "--":
			rest = append(rest, args[i+1:]...)
			i = len(args)
		case strings.HasPrefix(a, "-") && a != "-":
			fmt.Fprintf(stderr, "unknown option %s\n%s\n", a, usage)
			return 2
		default:
			rest = append(rest, a)
		}
	}
	if jwksPath == "" || len(rest) != 1 {
		fmt.Fprintln(stderr, usage)
		return 2
	}
	jwksText, err := os.ReadFile(jwksPath)
	if err != nil {
		fmt.Fprintf(stderr, "cannot read the JWKS: %v\n", err)
		return 2
	}
	trusted, err := LoadJWKS(jwksText)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", jwksPath, err)
		return 2
	}
	var data []byte
	if rest[0] == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(rest[0])
	}
	if err != nil {
		fmt.Fprintf(stderr, "cannot read the addenda: %v\n", err)
		return 2
	}
	results, tips := Verify(data, trusted)
	status := 0
	for _, r := range results {
		if len(r.Findings) == 0 {
			fmt.Fprintf(stdout, "OK %d %s %d\n", r.Line, displayStream(r.Stream), r.Seq)
			continue
		}
		status = 1
		var codes, msgs []string
		seen := map[string]bool{}
		for _, f := range r.Findings {
			if !seen[f.Code] {
				seen[f.Code] = true
				codes = append(codes, f.Code)
			}
			msgs = append(msgs, f.Code+": "+oneLine(f.Msg))
		}
		fmt.Fprintf(stdout, "FAIL %d %s %s\n", r.Line, strings.Join(codes, ","), strings.Join(msgs, "; "))
	}
	for _, t := range tips {
		fmt.Fprintf(stderr, "tip %s %d %s (%d addenda)\n", displayStream(t.Stream), t.Seq, t.Hash, t.Count)
	}
	return status
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}
