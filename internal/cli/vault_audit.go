package cli

import (
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/audit"
)

func vaultAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit trail of key operations and changes"}
	list := &cobra.Command{
		Use:   "list",
		Short: "List audit records (filters: --vault, --key, --identity, --since, --until, --result, --operation)",
		Args:  cobra.NoArgs,
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
			var out struct {
				Value []audit.Record `json:"value"`
			}
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
						r.Operation, r.Target, r.Algorithm, r.Result, r.Duration.String()})
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
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			var res audit.VerifyResult
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
