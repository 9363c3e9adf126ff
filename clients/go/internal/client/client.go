// Package client is what the three reference clients share: the environment they read
// (clients/README.md), the channel (TLS or plaintext, the caller's bearer token, the platform's
// published service config), backoff with jitter, request ids, and error reports that decode the
// platform's error details.
package client

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"covidtest.bluezone.vn/clients/gen/serviceconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
)

// The environment every reference client reads (clients/README.md).
const (
	EnvResultAddr  = "COVIDTEST_RESULT_ADDR"
	EnvPublishAddr = "COVIDTEST_PUBLISH_ADDR"
	EnvVerifyAddr  = "COVIDTEST_VERIFY_ADDR"
	EnvLabToken    = "LAB_TOKEN"
	EnvPartner     = "PARTNER_TOKEN"
	EnvDevice      = "DEVICE_TOKEN"
	EnvCAFile      = "COVIDTEST_CA_FILE"
)

// Getenv returns the value of a required environment variable, or an error that names it.
func Getenv(name string) (string, error) {
	value := os.Getenv(name)
	if value == "" {
		return "", fmt.Errorf("%s is not set (clients/README.md lists the environment)", name)
	}
	return value, nil
}

// Dial opens a channel to the service at the address held by addrVar, calling as the holder of the
// token held by tokenVar. With COVIDTEST_CA_FILE set the channel speaks TLS and checks the server's
// certificate against that CA bundle; without it, plaintext (a local stack only). The channel loads
// the published service config (protos/service_config.json): per-method timeouts and retries of
// UNAVAILABLE. It connects lazily; a server that is down shows as UNAVAILABLE on the first call.
func Dial(addrVar, tokenVar string, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	addr, err := Getenv(addrVar)
	if err != nil {
		return nil, err
	}
	token, err := Getenv(tokenVar)
	if err != nil {
		return nil, err
	}
	options := []grpc.DialOption{
		grpc.WithDefaultServiceConfig(serviceconfig.JSON),
		grpc.WithUserAgent("covidtest-go-reference-client"),
		// grpc-go's default reconnect backoff grows to 120 s; a client that retries its own calls
		// wants the channel to try the server again sooner.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 200 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	caFile := os.Getenv(EnvCAFile)
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvCAFile, err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: %s holds no PEM certificate", EnvCAFile, caFile)
		}
		tlsConfig := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		options = append(options, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	} else {
		options = append(options, grpc.WithInsecure())
	}
	options = append(options, grpc.WithPerRPCCredentials(bearer{token: token, secure: caFile != ""}))
	options = append(options, extra...)
	return grpc.Dial(addr, options...)
}

// bearer sends `authorization: Bearer <token>` with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity refuses to send the token in plaintext once TLS is configured.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

// NewRequestID returns a random (version 4) UUID, the idempotency key of a mutation.
func NewRequestID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // the system's random source failed: nothing sensible is left to do
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
