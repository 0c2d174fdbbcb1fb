package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func vaultAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read and verify the audit trail of key operations and changes",
		Long: `Every key operation (through the CLI, the Azure Key Vault API or Coffer's own services),
every vault change and every access-policy change is recorded in an append-only audit
trail whose records are chained by an HMAC under a key derived from the vault root key, so
an edited, inserted or removed record is detected, also by whoever holds the database.`,
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit records (filters: --vault, --key, --identity, --since, --until, --result, --operation)",
		Long: `List audit records, oldest first: sequence number, time, identity, client address,
operation, target, algorithm, result and duration. The filters combine (all must match);
--limit caps the number of records.

Needs vault/read on the vault given with --vault, or on / (the whole trail) without it
(roles Owner, Contributor, Reader, Key Vault Administrator or Key Vault Reader).`,
		Example: `  coffer vault audit list --vault team1 --since 1h
  coffer vault audit list --vault team1 --key kek --operation KeyUnwrapKey -o json
  coffer vault audit list --identity kms-plugin --result denied`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for _, f := range []string{"vault", "key", "identity", "since", "until", "result", "operation"} {
				if v, _ := cmd.Flags().GetString(f); v != "" {
					q.Set(f, v)
				}
			}
			if n, _ := cmd.Flags().GetInt("limit"); n > 0 {
				q.Set("limit", strconv.Itoa(n))
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var out wire.List[wire.AuditRecord]
			if err := c.do(cmd.Context(), "GET", "/coffer/v1/audit?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			return printResult(cmd, out.Value, func() Table {
				t := Table{Header: []string{"SEQ", "TIME", "IDENTITY", "ADDRESS", "OPERATION", "TARGET", "ALG", "RESULT", "DURATION"}}
				for _, r := range out.Value {
					who := r.PrincipalName
					if who == "" {
						who = r.PrincipalID
					}
					t.Rows = append(t.Rows, []string{strconv.FormatInt(r.Seq, 10), r.Time.Format(time.RFC3339), who, r.ClientAddr,
						r.Operation, r.Target, r.Algorithm, r.Result, r.Duration().String()})
				}
				return t
			})
		},
	}
	list.Flags().String("vault", "", "only this vault")
	list.Flags().String("key", "", "only this key (with --vault: that vault's key)")
	list.Flags().String("identity", "", "only this identity (object id or name)")
	list.Flags().String("since", "", "from this time (RFC 3339) or this long ago (1h)")
	list.Flags().String("until", "", "before this time (RFC 3339) or this long ago")
	list.Flags().String("result", "", "success, denied or failure")
	list.Flags().String("operation", "", "operation name (KeyUnwrapKey, KeyCreate, VaultUpdate...)")
	list.Flags().Int("limit", 1000, "at most this many records")
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the whole keyed hash chain and its head; exit 1 and name the first broken record",
		Long: `Recompute the audit trail's chain from the first record to the last. The chain is an
HMAC-SHA256 under a key derived from the vault root key, which is not in the database, so
whoever holds only the database cannot rewrite it and recompute it (docs/audit.md).

Checks that no record was edited, inserted or removed (in the middle or at the end), that
no sequence number was used twice, and that the trail reaches its signed high-water mark
and the signed checkpoint the server keeps beside the root key. Prints whether the chain is
intact, the number of records, where the keyed chain starts (records before it were written
before the chain was keyed), and the head as SEQ:HASH: keep it elsewhere (a log shipper, a
ticket) and pass it later with --expect-head, which fails if the trail no longer reaches
that record or holds another one there. Exits 1 if anything does not hold, naming the first
broken record and why.

Needs vault/read on / (a role such as Owner, Contributor or Reader assigned at /).`,
		Example: `  coffer vault audit verify
  coffer vault audit verify --expect-head 1042:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
  coffer vault audit verify -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "/coffer/v1/audit/verify"
			if h, _ := cmd.Flags().GetString("expect-head"); h != "" {
				path += "?" + url.Values{"expectHead": {h}}.Encode()
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var res wire.AuditVerifyResult
			if err := c.do(cmd.Context(), "GET", path, nil, &res); err != nil {
				return err
			}
			if err := printResult(cmd, res, func() Table { return verifyTable(res) }); err != nil {
				return err
			}
			if !res.OK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	verify.Flags().String("expect-head", "", "SEQ:HASH printed by an earlier verify: fail if the trail does not reach it or differs there")
	cmd.AddCommand(list, verify)
	return cmd
}

// verifyTable is the text answer of audit verify.
func verifyTable(res wire.AuditVerifyResult) Table {
	status := "intact"
	if !res.OK {
		status = fmt.Sprintf("BROKEN at record %d: %s", res.BrokenAt, res.Problem)
	}
	keyed := "-"
	switch {
	case res.KeyedFrom == 1:
		keyed = "keyed from sequence 1 (every record)"
	case res.KeyedFrom > 1:
		keyed = fmt.Sprintf("keyed from sequence %d (records before it use the unkeyed chain of older versions)", res.KeyedFrom)
	}
	t := Table{Rows: [][]string{{"chain:", status}, {"records:", strconv.FormatInt(res.Records, 10)}, {"keyed:", keyed},
		{"head:", fmt.Sprintf("%d:%s", res.HeadSeq, res.HeadHash)}}}
	if res.CheckpointSeq > 0 {
		t.Rows = append(t.Rows, []string{"checkpoint:", fmt.Sprintf("sequence %d (signed, beside the root key)", res.CheckpointSeq)})
	}
	if res.ExpectedHead != "" {
		t.Rows = append(t.Rows, []string{"expected head:", res.ExpectedHead})
	}
	return t
}
