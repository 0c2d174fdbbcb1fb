package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

// Registry management commands: repositories, tags and garbage collection, over the
// management API (/coffer/v1/registry/...). The `registry` parent also holds the
// encryption commands (registry_encryption.go).
func registryCommand() *cobra.Command {
	reg := registryGroup()
	reg.AddCommand(registryRepoCommand(), registryTagCommand(), registryGCCommand(), encryptionCommand(), registryConfigCommand(), signatureCommand())
	return reg
}

func repoRows(list []wire.Repository) Table {
	t := Table{Header: []string{"NAME", "MANIFESTS", "TAGS", "BLOBS", "SIZE", "CREATED"}}
	for _, r := range list {
		t.Rows = append(t.Rows, []string{r.Name, strconv.Itoa(r.ManifestCount), strconv.Itoa(r.TagCount),
			strconv.Itoa(r.BlobCount), wire.HumanBytes(r.Size), r.Created.Local().Format(time.DateTime)})
	}
	return t
}

func registryRepoCommand() *cobra.Command {
	repo := &cobra.Command{Use: "repo", Aliases: []string{"repository"}, Short: "List, show and delete repositories"}
	list := &cobra.Command{
		Use:     "list",
		Short:   "List repositories with their manifest, tag and blob counts",
		Example: "  coffer registry repo list\n  coffer registry repo list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var all []wire.Repository
			last := ""
			for {
				var page wire.RepositoryList
				q := url.Values{"n": {"500"}}
				if last != "" {
					q.Set("last", last)
				}
				if err := c.do(cmd.Context(), "GET", "/coffer/v1/registry/repositories?"+q.Encode(), nil, &page); err != nil {
					return err
				}
				all = append(all, page.Repositories...)
				if page.Next == "" {
					break
				}
				last = page.Next
			}
			all = orEmpty(all)
			return printResult(cmd, all, func() Table { return repoRows(all) })
		},
	}
	show := &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one repository, its tags and their signature state",
		Example: "  coffer registry repo show team/app\n  coffer registry repo show team/app -o json",
		Args:    cobra.ExactArgs(1),
		Long: `Show one repository: its counts, size, whether a tagged image in it has
client-encrypted layers ('coffer image encrypt', skopeo --encryption-key),
and its tags with their signature state.`,
		RunE: repoShowRun, // registry_signature.go
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a repository: its manifests, tags and uploads (blobs go at the next garbage collection)",
		Long: `Delete a repository: its manifests, tags, blob links and uploads in progress. The
blobs themselves are removed by the next garbage collection if no other repository
needs them ('coffer registry gc').`,
		Example: "  coffer registry repo delete team/old-app --yes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if yes, _ := cmd.Flags().GetBool("yes"); !yes {
				return fmt.Errorf("deleting repository %s removes all its images: add --yes to confirm", args[0])
			}
			return deleteRun(repoPath, func(args []string) (any, func() Table, string) {
				return map[string]any{"deleted": true, "repository": args[0]}, nil, fmt.Sprintf("Deleted repository %s.", args[0])
			})(cmd, args)
		},
	}
	del.Flags().Bool("yes", false, "confirm the deletion")
	repo.AddCommand(list, show, del)
	return repo
}

// repoPath is the path of the repository args[0] (its slashes are path separators).
func repoPath(args []string) string { return "/coffer/v1/registry/repositories/" + args[0] }

func registryTagCommand() *cobra.Command {
	tag := &cobra.Command{Use: "tag", Short: "List and delete tags"}
	list := &cobra.Command{
		Use:     "list REPOSITORY",
		Short:   "List a repository's tags with their digests, client-encrypted layers and signatures",
		Example: "  coffer registry tag list team/app",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.TagList
			if err := c.do(cmd.Context(), "GET", "/coffer/v1/registry/tags?"+url.Values{"repository": {args[0]}}.Encode(), nil, &out); err != nil {
				return err
			}
			out.Tags = orEmpty(out.Tags)
			return printResult(cmd, out.Tags, func() Table { return tagTable(out.Tags) })
		},
	}
	del := &cobra.Command{
		Use:     "delete REPOSITORY TAG",
		Short:   "Delete a tag (the manifest stays, reachable by digest)",
		Example: "  coffer registry tag delete team/app v1.0",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			q := url.Values{"repository": {args[0]}, "tag": {args[1]}}
			if err := c.do(cmd.Context(), "DELETE", "/coffer/v1/registry/tags?"+q.Encode(), nil, nil); err != nil {
				return err
			}
			return printDone(cmd, map[string]any{"deleted": true, "repository": args[0], "tag": args[1]},
				fmt.Sprintf("Deleted tag %s:%s.", args[0], args[1]))
		},
	}
	tag.AddCommand(list, del)
	return tag
}

// gcReport is what `coffer registry gc` prints of the wire.GCReport answered (-o json has
// always had this shape: blobs without their touch time).
type gcReport struct {
	DryRun         bool      `json:"dryRun"`
	Cutoff         time.Time `json:"cutoff"`
	Blobs          []gcBlob  `json:"blobs"`
	StaleLinks     int       `json:"staleLinks"`
	BytesFreed     int64     `json:"bytesFreed"`
	OrphanFiles    int       `json:"orphanFiles"`
	ExpiredUploads int       `json:"expiredUploads"`
}

type gcBlob struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

func registryGCCommand() *cobra.Command {
	gc := &cobra.Command{
		Use:   "gc",
		Short: "Collect garbage: remove blobs no manifest needs (online, safe beside pushes)",
		Long: `Remove blobs that no manifest references and that no repository linked within the
grace period (1h), blob files left without metadata by a crash, and upload sessions
idle longer than the server's upload expiry ('coffer serve --upload-expiry'). The registry stays online: pushes and pulls go on while it
runs, and content a push is about to reference is never removed. With --dry-run it
only reports what it would remove. Progress is printed to stderr.`,
		Example: "  coffer registry gc --dry-run\n  coffer registry gc -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			dry, _ := cmd.Flags().GetBool("dry-run")
			req, err := http.NewRequestWithContext(cmd.Context(), "POST", c.base+"/coffer/v1/registry/gc?dryRun="+strconv.FormatBool(dry), nil)
			if err != nil {
				return err
			}
			req.Header.Set("Authorization", "Bearer "+c.token)
			req.Header.Set("Accept", "application/x-ndjson")
			resp, err := c.http.Do(req)
			if err != nil {
				return fmt.Errorf("reach %s: %w", c.base, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode >= 300 {
				return decodeAPIError(resp)
			}
			var rep *wire.GCReport
			sc := bufio.NewScanner(resp.Body)
			sc.Buffer(make([]byte, 64<<10), 64<<20)
			errOut := cmd.ErrOrStderr()
			for sc.Scan() {
				var ev wire.GCEvent
				if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
					return fmt.Errorf("garbage collection progress: %w", err)
				}
				switch {
				case ev.Error != "":
					return fmt.Errorf("garbage collection failed: %s", ev.Error)
				case ev.Report != nil:
					rep = ev.Report
				case ev.Total > 0:
					fmt.Fprintf(errOut, "gc: %s %d/%d\n", ev.Phase, ev.Done, ev.Total)
				case ev.Phase != "":
					fmt.Fprintf(errOut, "gc: %s\n", ev.Phase)
				}
			}
			if err := sc.Err(); err != nil {
				return fmt.Errorf("garbage collection: %w", err)
			}
			if rep == nil {
				return fmt.Errorf("garbage collection: the server ended the stream without a report")
			}
			view := gcView(*rep)
			return printResult(cmd, view, func() Table {
				verb := "Removed"
				if rep.DryRun {
					verb = "Would remove"
				}
				t := Table{Header: []string{"WHAT", "COUNT"}}
				t.Rows = append(t.Rows,
					[]string{verb + " blobs", strconv.Itoa(len(rep.Blobs))},
					[]string{verb + " bytes", wire.HumanBytes(rep.BytesFreed)},
					[]string{verb + " stale blob links", strconv.Itoa(rep.StaleLinks)},
					[]string{verb + " orphan files", strconv.Itoa(rep.OrphanFiles)},
					[]string{"Expired uploads", strconv.Itoa(rep.ExpiredUploads)})
				return t
			})
		},
	}
	gc.Flags().Bool("dry-run", false, "report what would be removed without removing it")
	return gc
}

func gcView(rep wire.GCReport) *gcReport {
	v := &gcReport{DryRun: rep.DryRun, Cutoff: rep.Cutoff, StaleLinks: rep.StaleLinks, BytesFreed: rep.BytesFreed,
		OrphanFiles: rep.OrphanFiles, ExpiredUploads: rep.ExpiredUploads}
	v.Blobs = wire.MapSlice(rep.Blobs, func(b wire.Blob) gcBlob { return gcBlob{Digest: b.Digest, Size: b.Size} })
	return v
}

// registryGroup is the `coffer registry` command; the registry's and the encryption's
// commands both attach to it.
func registryGroup() *cobra.Command {
	return &cobra.Command{
		Use:   "registry",
		Short: "Manage the registry: repositories, tags, garbage collection, encryption at rest",
		Long: `Manage the OCI registry that 'coffer serve' runs at /v2/: list, show and delete
repositories and tags, collect garbage, and show or change how its content is encrypted at
rest. Pushing and pulling images is done with any registry client (docker, skopeo, crane,
oras, containerd) against the server's address.`,
		Example: `  coffer registry repo list
  coffer registry tag list team/app
  coffer registry gc --dry-run
  coffer registry encryption show`,
	}
}
