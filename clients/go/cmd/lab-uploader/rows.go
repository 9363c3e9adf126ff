package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	resultv1 "covidtest.bluezone.vn/clients/gen/covidtest/result/v1"
	typev1 "covidtest.bluezone.vn/clients/gen/covidtest/type/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// columns is the CSV header every results file starts with (clients/README.md).
var columns = []string{"sample_barcode", "outcome", "tested_at", "method", "lab_reference"}

// outcomes are the outcomes a results file may give.
var outcomes = map[string]typev1.Outcome{
	"NEGATIVE":     typev1.Outcome_OUTCOME_NEGATIVE,
	"POSITIVE":     typev1.Outcome_OUTCOME_POSITIVE,
	"INCONCLUSIVE": typev1.Outcome_OUTCOME_INCONCLUSIVE,
}

// row is one CSV line: the submission it becomes, or the problem that keeps it from being sent.
type row struct {
	line       int
	barcode    string
	submission *resultv1.ResultSubmission
	problem    *problem
}

// problem is a row rejected before sending, described as the platform describes a field violation.
type problem struct {
	field, reason, description string
}

func readRows(name string) ([]row, error) {
	file, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	reader := csv.NewReader(file)
	reader.FieldsPerRecord = len(columns)
	reader.TrimLeadingSpace = true
	header, err := reader.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: reading the header: %w", name, err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte order mark, as spreadsheets write
	if strings.Join(header, ",") != strings.Join(columns, ",") {
		return nil, fmt.Errorf("%s: the header must be %s", name, strings.Join(columns, ","))
	}
	var rows []row
	for {
		record, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		line, _ := reader.FieldPos(0)
		rows = append(rows, parseRow(line, record))
	}
}

func parseRow(line int, record []string) row {
	for i := range record {
		record[i] = strings.TrimSpace(record[i])
	}
	r := row{line: line, barcode: record[0]}
	outcome, known := outcomes[strings.ToUpper(record[1])]
	if !known {
		r.problem = &problem{"outcome", "FIELD_FORMAT_INVALID", fmt.Sprintf("%q is not NEGATIVE, POSITIVE or INCONCLUSIVE", record[1])}
		return r
	}
	testedAt, err := time.Parse(time.RFC3339, record[2])
	if err != nil {
		r.problem = &problem{"tested_at", "FIELD_FORMAT_INVALID", fmt.Sprintf("%q is not an RFC 3339 time", record[2])}
		return r
	}
	r.submission = &resultv1.ResultSubmission{
		Target:       &resultv1.ResultSubmission_SampleBarcode{SampleBarcode: record[0]},
		Outcome:      outcome,
		TestedAt:     timestamppb.New(testedAt),
		Method:       record[3],
		LabReference: record[4],
	}
	return r
}
