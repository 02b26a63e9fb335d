package main

// Trusted keys (spec section 5): a JWKS {"keys": [...]} of RFC 8037 OKP
// Ed25519 public keys, read strictly (section 6), indexed by RFC 7638
// thumbprint. Anything else in it refuses the whole JWKS.

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

var b64 = base64.RawURLEncoding.Strict()

// decodeB64URL decodes base64url without padding and insists that the text is
// the canonical encoding of the bytes it gives.
func decodeB64URL(s string) ([]byte, bool) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, false
	}
	if b64.EncodeToString(b) != s {
		return nil, false
	}
	return b, true
}

// Thumbprint is the RFC 7638 thumbprint of an Ed25519 OKP key: SHA-256 of
// the exact bytes {"crv":"Ed25519","kty":"OKP","x":"<x>"}, base64url without
// padding.
func Thumbprint(x string) string {
	sum := sha256.Sum256([]byte(`{"crv":"Ed25519","kty":"OKP","x":"` + x + `"}`))
	return b64.EncodeToString(sum[:])
}

type TrustedKey struct {
	X   string
	Pub ed25519.PublicKey
}

func str(v *Value) (string, bool) {
	if v == nil || v.Kind != KString {
		return "", false
	}
	return string(v.Str), true
}

// LoadJWKS reads a JWKS text and returns the trusted keys by kid.
func LoadJWKS(text []byte) (map[string]TrustedKey, error) {
	doc, perr := ParseStrict(text)
	if perr != nil {
		return nil, fmt.Errorf("the JWKS is not a strict JSON document (%s)", perr.Error())
	}
	if doc.Kind != KObject {
		return nil, fmt.Errorf("the JWKS is not an object")
	}
	// Members other than "keys" (RFC 7517 allows them) are ignored.
	keys := doc.Get("keys")
	if keys == nil || keys.Kind != KArray {
		return nil, fmt.Errorf(`the JWKS has no "keys" array`)
	}
	out := map[string]TrustedKey{}
	for i, k := range keys.Arr {
		if k.Kind != KObject {
			return nil, fmt.Errorf("keys[%d] is not an object", i)
		}
		for _, m := range k.Obj {
			// Other members (key_ops, x5c, ...) are ignored: "anything else"
			// is read as a key that is not an Ed25519 public key.
			switch string(m.Key) {
			case "kty", "crv", "x", "kid", "alg", "use":
				if m.Val.Kind != KString {
					return nil, fmt.Errorf("keys[%d].%s is not a string", i, string(m.Key))
				}
			case "d":
				return nil, fmt.Errorf("keys[%d] holds a private key member \"d\"", i)
			}
		}
		if s, _ := str(k.Get("kty")); s != "OKP" {
			return nil, fmt.Errorf("keys[%d] is not an OKP key", i)
		}
		if s, _ := str(k.Get("crv")); s != "Ed25519" {
			return nil, fmt.Errorf("keys[%d] is not an Ed25519 key", i)
		}
		x, _ := str(k.Get("x"))
		raw, ok := decodeB64URL(x)
		if !ok || len(raw) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("keys[%d].x is not the base64url (no padding) of 32 bytes", i)
		}
		kid := Thumbprint(x)
		if k.Has("kid") {
			if s, _ := str(k.Get("kid")); s != kid {
				return nil, fmt.Errorf("keys[%d].kid %q is not the RFC 7638 thumbprint of the key (%s)", i, s, kid)
			}
		}
		if k.Has("alg") {
			if s, _ := str(k.Get("alg")); s != "EdDSA" {
				return nil, fmt.Errorf("keys[%d].alg is not EdDSA", i)
			}
		}
		if k.Has("use") {
			if s, _ := str(k.Get("use")); s != "sig" {
				return nil, fmt.Errorf("keys[%d].use is not sig", i)
			}
		}
		out[kid] = TrustedKey{X: x, Pub: ed25519.PublicKey(raw)}
	}
	return out, nil
}

// CheckSignature applies the checks of spec section 5 in order and returns the
// first that fails as (code, message), or ("", "") when the document verifies.
func CheckSignature(doc *Value, trusted map[string]TrustedKey) (string, string) {
	sigV := doc.Get("signature")
	issuer := doc.Get("issuer")
	kid, kidOK := str(issuer.Get("kid"))
	sig, sigOK := str(sigV)
	if !sigOK || !kidOK {
		return "unsigned", "the addendum has no signature (a string signature and a string issuer.kid)"
	}
	key, ok := trusted[kid]
	if !ok {
		return "unknown_kid", fmt.Sprintf("issuer.kid %s is not in the trusted JWKS", kid)
	}
	if jwk := issuer.Get("jwk"); jwk != nil {
		x, _ := str(jwk.Get("x"))
		if jwk.Kind != KObject || x != key.X {
			return "jwk_mismatch", fmt.Sprintf("issuer.jwk is not the trusted key of kid %s", kid)
		}
	}
	raw, ok := decodeB64URL(sig)
	if !ok || len(raw) != ed25519.SignatureSize {
		return "bad_signature", "the signature is not the canonical base64url (no padding) of 64 bytes"
	}
	signed, err := Canonical(doc.Without("signature"))
	if err != nil {
		return "bad_signature", "the signed bytes cannot be written in canonical JSON: " + err.Error()
	}
	if !ed25519.Verify(key.Pub, signed, raw) {
		return "bad_signature", "the signature does not match the document"
	}
	return "", ""
}
