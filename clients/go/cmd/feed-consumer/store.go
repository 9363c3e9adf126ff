package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Store is the consumer's durable state, a JSON file standing in for the partner's own database:
// the highest feed position processed, and what each processed event was about. It holds no personal
// data: ids, barcodes and certificate ids only, never a name, a birth date or a QR text.
type Store struct {
	path  string
	state storeState
}

type storeState struct {
	// Position is the highest feed position processed and committed; the next stream starts after it.
	Position uint64 `json:"position"`
	// Events are the processed events by position.
	Events map[uint64]Event `json:"events"`
}

// Event is what the consumer keeps of one processed feed event.
type Event struct {
	Position             uint64 `json:"position"`
	Kind                 string `json:"kind"`
	SampleBarcode        string `json:"sample_barcode,omitempty"`
	SampleID             string `json:"sample_id,omitempty"`
	ResultID             string `json:"result_id,omitempty"`
	CertificateID        string `json:"certificate_id,omitempty"`
	RevokedCertificateID string `json:"revoked_certificate_id,omitempty"`
}

// OpenStore reads the store at path; a file that does not exist yet is an empty store.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, state: storeState{Events: map[uint64]Event{}}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &s.state); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if s.state.Events == nil {
		s.state.Events = map[uint64]Event{}
	}
	return s, nil
}

// Position is the highest position processed and committed (0 for a new store).
func (s *Store) Position() uint64 { return s.state.Position }

// Has reports whether the event at position was processed already.
func (s *Store) Has(position uint64) bool {
	_, ok := s.state.Events[position]
	return ok || position <= s.state.Position
}

// Add records a processed event in memory; Commit makes it durable.
func (s *Store) Add(e Event) {
	s.state.Events[e.Position] = e
	if e.Position > s.state.Position {
		s.state.Position = e.Position
	}
}

// Commit writes the store atomically: a temporary file in the same directory, flushed to disk, then
// renamed over the store, and the directory flushed, so that after a crash the file holds either
// the previous state or this one, never a mix.
func (s *Store) Commit() error {
	data, err := json.MarshalIndent(s.state, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
