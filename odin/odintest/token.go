package odintest

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// tokenClaims are the JWT claims of an issued token. Exp is a whole number of seconds,
// as RFC 7519 NumericDate allows, and the simulator enforces exactly that time.
type tokenClaims struct {
	Subject    string `json:"sub"`
	IssuedAt   int64  `json:"iat"`
	Expires    int64  `json:"exp"`
	ID         string `json:"jti"`
	Generation uint64 `json:"gen"` // ExpireTokens invalidates older generations
}

var (
	errTokenMissing = errors.New("Authorization header with a Bearer token is required")
	errTokenInvalid = errors.New("Invalid token")
	errTokenExpired = errors.New("Token has expired")
	errTokenRevoked = errors.New("Token is no longer valid, log in again")
)

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// tokenSigner issues and verifies HS256 JWTs with a key that lives only in memory.
type tokenSigner struct {
	key []byte
}

func newTokenSigner() tokenSigner {
	return tokenSigner{key: []byte(rand.Text() + rand.Text())}
}

// issue returns a token for subject that expires lifetime after now, rounded up to the
// next whole second.
func (ts tokenSigner) issue(subject string, now time.Time, lifetime time.Duration, generation uint64) string {
	expires := now.Add(lifetime)
	exp := expires.Unix()
	if expires.After(time.Unix(exp, 0)) {
		exp++
	}

	id := make([]byte, 12)
	_, _ = rand.Read(id) // crypto/rand.Read never returns an error
	claims, err := json.Marshal(tokenClaims{
		Subject:    subject,
		IssuedAt:   now.Unix(),
		Expires:    exp,
		ID:         hex.EncodeToString(id),
		Generation: generation,
	})
	if err != nil {
		panic("odintest: encoding token claims: " + err.Error())
	}

	unsigned := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(claims)
	return unsigned + "." + ts.sign(unsigned)
}

func (ts tokenSigner) sign(unsigned string) string {
	mac := hmac.New(sha256.New, ts.key)
	mac.Write([]byte(unsigned))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// verify checks the Authorization header value and returns the token's claims. Its
// errors never contain the token.
func (ts tokenSigner) verify(authorization string, now time.Time, generation uint64) (tokenClaims, error) {
	scheme, token, found := strings.Cut(authorization, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return tokenClaims{}, errTokenMissing
	}
	token = strings.TrimSpace(token)

	header, rest, ok1 := strings.Cut(token, ".")
	payload, signature, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || header != jwtHeader {
		return tokenClaims{}, errTokenInvalid
	}
	if !hmac.Equal([]byte(signature), []byte(ts.sign(header+"."+payload))) {
		return tokenClaims{}, errTokenInvalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return tokenClaims{}, errTokenInvalid
	}
	var claims tokenClaims
	if err := json.Unmarshal(raw, &claims); err != nil {
		return tokenClaims{}, errTokenInvalid
	}

	if claims.Generation != generation {
		return tokenClaims{}, errTokenRevoked
	}
	if !now.Before(time.Unix(claims.Expires, 0)) {
		return tokenClaims{}, errTokenExpired
	}
	return claims, nil
}
