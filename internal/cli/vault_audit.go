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
trail whose records are hash-chained, so an edited or removed record is detected.`,
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
		Short: "Check the whole hash chain; exit 1 and name the first broken record if it was edited",
		Long: `Recompute the audit trail's hash chain from the first record to the last. Prints whether
the chain is intact, the number of records and the head (last sequence number and hash;
keep it elsewhere to detect a truncated trail later). Exits 1 if a record was edited or
removed, naming the first broken record.

Needs vault/read on / (a role such as Owner, Contributor or Reader assigned at /).`,
		Example: `  coffer vault audit verify
  coffer vault audit verify -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var res wire.AuditVerifyResult
			if err := c.do(cmd.Context(), "GET", "/coffer/v1/audit/verify", nil, &res); err != nil {
				return err
			}
			if err := printResult(cmd, res, func() Table {
				status := "intact"
				if !res.OK {
					status = fmt.Sprintf("BROKEN at record %d: %s", res.BrokenAt, res.Problem)
				}
				return Table{Rows: [][]string{{"chain:", status}, {"records:", strconv.FormatInt(res.Records, 10)},
					{"head:", fmt.Sprintf("%d %s", res.HeadSeq, res.HeadHash)}}}
			}); err != nil {
				return err
			}
			if !res.OK {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.AddCommand(list, verify)
	return cmd
}
