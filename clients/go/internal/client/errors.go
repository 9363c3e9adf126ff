package client

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"covidtest.bluezone.vn/clients/gen/google/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// codeNames are the canonical gRPC code names (grpc-go's Code.String says "Unavailable").
var codeNames = [...]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

// CodeName returns the canonical name of a gRPC status code, such as "UNAVAILABLE".
func CodeName(code codes.Code) string {
	if int(code) < len(codeNames) {
		return codeNames[code]
	}
	return fmt.Sprintf("CODE_%d", uint32(code))
}

// Code returns the gRPC status code of err (UNKNOWN for an error that is not a status).
func Code(err error) codes.Code {
	return status.Code(err)
}

// Brief renders an RPC error on one line: "UNAVAILABLE: <message>".
func Brief(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	return CodeName(st.Code()) + ": " + st.Message()
}

// RetryDelay returns the delay of the error's google.rpc.RetryInfo detail, if it has one.
func RetryDelay(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.RetryInfo); ok && info.GetRetryDelay() != nil {
			return info.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}

// Describe renders an RPC error for a person: the status code and message, then one indented line
// per detail of the google.rpc.Status in the `grpc-status-details-bin` trailer (ErrorInfo, every
// BadRequest field violation, RetryInfo, RequestInfo, LocalizedMessage, anything else as text).
func Describe(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", CodeName(st.Code()), st.Message())
	for _, detail := range st.Details() {
		b.WriteString("\n  ")
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			fmt.Fprintf(&b, "ErrorInfo: reason %s, domain %s", d.GetReason(), d.GetDomain())
			keys := make([]string, 0, len(d.GetMetadata()))
			for key := range d.GetMetadata() {
				keys = append(keys, key)
			}
			sort.Strings(keys)
			for _, key := range keys {
				fmt.Fprintf(&b, ", %s=%s", key, d.GetMetadata()[key])
			}
		case *errdetails.BadRequest:
			b.WriteString("BadRequest:")
			for _, v := range d.GetFieldViolations() {
				fmt.Fprintf(&b, "\n    %s", Violation(v))
			}
		case *errdetails.RetryInfo:
			fmt.Fprintf(&b, "RetryInfo: retry after %s", d.GetRetryDelay().AsDuration())
		case *errdetails.RequestInfo:
			fmt.Fprintf(&b, "RequestInfo: request_id %s (quote it to support)", d.GetRequestId())
		case *errdetails.LocalizedMessage:
			fmt.Fprintf(&b, "LocalizedMessage (%s): %s", d.GetLocale(), d.GetMessage())
		case error:
			fmt.Fprintf(&b, "undecodable detail: %v", d)
		default:
			fmt.Fprintf(&b, "%T: %v", d, d)
		}
	}
	return b.String()
}

// Violation renders one field violation as `field REASON: description`, the way the platform
// reports a rejected field (for example "results[3].tested_at TIME_IN_FUTURE: …").
func Violation(v *errdetails.BadRequest_FieldViolation) string {
	reason := v.GetReason()
	if reason == "" {
		reason = "INVALID"
	}
	return fmt.Sprintf("%s %s: %s", v.GetField(), reason, v.GetDescription())
}
