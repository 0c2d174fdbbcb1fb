package api_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/cofferhq/coffer/internal/blobstore"
	"github.com/cofferhq/coffer/internal/seal"
)

// TestIdenticalConcurrentPushes: 8 clients push the same blobs at once into one repository,
// and 8 more the same blobs into a second, in every upload style; every push succeeds and
// every blob reads back intact. A second round pushes them again into repositories that
// already hold them; the garbage collector runs in a loop meanwhile.
func TestIdenticalConcurrentPushes(t *testing.T) {
	root := make([]byte, 32)
	rand.Read(root)
	svc := newServiceWith(t, func(d blobstore.Driver) blobstore.Driver { return seal.NewDriver(d, fixedKeys{root}) })
	repos := []string{"same/one", "same/two"}
	c := newV2(t, svc, repos...)
	var blobs [][]byte
	for i := range 12 {
		b := make([]byte, 4096+i)
		rand.Read(b)
		blobs = append(blobs, b)
	}
	push := func(repo string, style int, content []byte) error {
		d := digest.FromBytes(content)
		var a answer
		switch style % 3 {
		case 0: // monolithic POST
			a = c.do("POST", "/v2/"+repo+"/blobs/uploads/?digest="+d.String(), content)
		case 1: // POST, then PUT with the bytes
			if a = c.do("POST", "/v2/"+repo+"/blobs/uploads/", nil); a.status != http.StatusAccepted {
				return fmt.Errorf("POST upload: %s", a)
			}
			a = c.do("PUT", a.header.Get("Location")+"?digest="+d.String(), content, "Content-Type", "application/octet-stream")
		case 2: // POST, PATCH, PUT without bytes
			if a = c.do("POST", "/v2/"+repo+"/blobs/uploads/", nil); a.status != http.StatusAccepted {
				return fmt.Errorf("POST upload: %s", a)
			}
			loc := a.header.Get("Location")
			if a = c.do("PATCH", loc, content, "Content-Type", "application/octet-stream"); a.status != http.StatusAccepted {
				return fmt.Errorf("PATCH upload: %s", a)
			}
			a = c.do("PUT", a.header.Get("Location")+"?digest="+d.String(), nil)
		}
		if a.status != http.StatusCreated || a.header.Get("Docker-Content-Digest") != d.String() {
			return fmt.Errorf("push %s to %s (style %d): %s", d, repo, style%3, a)
		}
		return nil
	}
	for round := range 2 {
		var wg sync.WaitGroup
		errs := make(chan error, 2*8*len(blobs)+1)
		// A collection runs beside the pushes, as in a long-running server (the blobs are
		// within the grace period: it must leave them, and not fail on files moving).
		stop := make(chan struct{})
		gcDone := make(chan struct{})
		go func() {
			defer close(gcDone)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := svc.GC(context.Background(), false, nil); err != nil {
					errs <- fmt.Errorf("round %d: collection beside the pushes: %w", round, err)
					return
				}
			}
		}()
		for _, repo := range repos {
			for client := range 8 {
				wg.Go(func() {
					for i, b := range blobs {
						if err := push(repo, client+i, b); err != nil {
							errs <- fmt.Errorf("round %d, client %d: %w", round, client, err)
						}
					}
				})
			}
		}
		wg.Wait()
		close(stop)
		<-gcDone
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			t.FailNow()
		}
		for _, repo := range repos {
			for _, b := range blobs {
				d := digest.FromBytes(b)
				a := c.do("GET", "/v2/"+repo+"/blobs/"+d.String(), nil)
				if a.status != http.StatusOK || !bytes.Equal(a.body, b) {
					t.Fatalf("round %d: GET %s from %s: %d, %d bytes (want %d intact)", round, d, repo, a.status, len(a.body), len(b))
				}
			}
		}
	}
}
