// Package grpcretry turns on grpc-go's retry support before grpc-go reads its configuration.
//
// grpc-go 1.33 (Debian's golang-google-grpc-dev) ignores the retryPolicy of a service config unless
// the environment holds GRPC_GO_RETRY=on, and reads that variable once, while its packages are
// initialised. Each command imports this package first, in an import group of its own at the top:
// the package imports nothing but os, so Go initialises it before grpc-go (Go 1.19 initialises a
// program's imports in the order they are listed; Go 1.21 and later in import path order, where
// covidtest.bluezone.vn/… comes before google.golang.org/…). Its init sets the variable unless the
// caller set it already. grpc-go 1.40 and later retry by default and no longer read it.
// tests/clients/test_go_clients.py checks that the retry policy is in force.
package grpcretry

import "os"

// Variable is the environment variable grpc-go 1.33 reads.
const Variable = "GRPC_GO_RETRY"

func init() {
	if _, set := os.LookupEnv(Variable); !set {
		os.Setenv(Variable, "on")
	}
}
