package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cofferhq/coffer/internal/durable"
)

// Checkpoint is the signed head kept outside the database (beside the root key): a copy
// or a rewrite of the database cannot move it back.
type Checkpoint struct {
	Head
	// KeyedFrom is the first sequence number of the keyed chain.
	KeyedFrom int64
	// Time is when it was written.
	Time time.Time
}

// checkpointFile is the file's JSON.
type checkpointFile struct {
	Format    string `json:"format"`
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"`
	KeyedFrom int64  `json:"keyedFrom"`
	Time      string `json:"time"`
	MAC       string `json:"mac"`
}

func checkpointMAC(key []byte, c Checkpoint) string {
	return hex.EncodeToString(encode(hmac.New(sha256.New, key), []string{checkpointLabel,
		strconv.FormatInt(c.Seq, 10), c.Hash, strconv.FormatInt(c.KeyedFrom, 10), strconv.FormatInt(c.Time.UnixNano(), 10)}))
}

// errCheckpointForged says the checkpoint's MAC does not hold.
var errCheckpointForged = errors.New("its MAC does not verify under this root key: it was edited, or it belongs to another root key")

// readCheckpoint reads and checks the checkpoint at path; ok is false if there is none.
func readCheckpoint(path string, key []byte) (c Checkpoint, ok bool, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Checkpoint{}, false, nil
	}
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("read audit checkpoint: %w", err)
	}
	var f checkpointFile
	if err := json.Unmarshal(raw, &f); err != nil || f.Format != checkpointLabel {
		return Checkpoint{}, false, fmt.Errorf("audit checkpoint %s is not a %s file", path, checkpointLabel)
	}
	t, err := time.Parse(time.RFC3339Nano, f.Time)
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("audit checkpoint %s: time: %w", path, err)
	}
	c = Checkpoint{Head: Head{Seq: f.Seq, Hash: f.Hash}, KeyedFrom: f.KeyedFrom, Time: t.UTC()}
	if !sameMAC(checkpointMAC(key, c), f.MAC) {
		return Checkpoint{}, false, fmt.Errorf("audit checkpoint %s: %w", path, errCheckpointForged)
	}
	return c, true, nil
}

// writeCheckpoint replaces the checkpoint at path durably, mode 0600.
func writeCheckpoint(path string, key []byte, c Checkpoint) error {
	c.Time = c.Time.UTC()
	f := checkpointFile{Format: checkpointLabel, Seq: c.Seq, Hash: c.Hash, KeyedFrom: c.KeyedFrom,
		Time: c.Time.Format(time.RFC3339Nano), MAC: checkpointMAC(key, c)}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write audit checkpoint: %w", err)
	}
	if err := durable.WriteFile(path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write audit checkpoint %s: %w", path, err)
	}
	return nil
}
