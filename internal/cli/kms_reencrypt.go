package cli

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cofferhq/coffer/internal/kmsplugin/reencrypt"
	"github.com/cofferhq/coffer/internal/mgmt/wire"
)

func kmsReencryptCommand() *cobra.Command {
	var kubeconfig, cluster string
	var resources []string
	cmd := &cobra.Command{
		Use:   "reencrypt",
		Short: "Rewrite every Secret (and other resources named) so each is stored under the current key",
		Long: `Reads every object of each resource (default: secrets) in every namespace through the
Kubernetes API and writes it back unchanged, so the apiserver stores it under its current
KMS key version. Prints a progress line per object on stderr and the counts at the end.
With --cluster, and only when every object was rewritten, it then marks the cluster's
decrypt-only keys as retirable on the Coffer server (they are never disabled or deleted by
Coffer). Run it after the plugin reports the new key_id (coffer kms cluster show) and the
apiserver has seen it (within a minute of the plugin's poll).`,
		Example: `  coffer kms reencrypt --kubeconfig /etc/kubernetes/admin.conf --cluster prod
  coffer kms reencrypt --kubeconfig ~/.kube/config --resource secrets --resource configmaps -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if kubeconfig == "" {
				return fmt.Errorf("--kubeconfig is required: the cluster whose resources to rewrite")
			}
			kc, err := reencrypt.FromKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			var writeKey string
			var api *apiClient
			if cluster != "" {
				if api, err = newAPIClient(cmd); err != nil {
					return err
				}
				var c wire.KMSCluster
				if err := api.do(cmd.Context(), http.MethodGet, kmsPath+"/"+url.PathEscape(cluster), nil, &c); err != nil {
					return err
				}
				writeKey = c.CurrentKeyID
			}
			errOut := cmd.ErrOrStderr()
			var results []reencrypt.Result
			for _, r := range resources {
				gvr, err := reencrypt.ParseResource(r)
				if err != nil {
					return err
				}
				res, err := kc.Rewrite(cmd.Context(), gvr, func(resource string, done, total int) {
					fmt.Fprintf(errOut, "\r%s %s %d/%d", resource, bar(done, total), done, total)
				})
				fmt.Fprintln(errOut)
				results = append(results, res)
				if err != nil {
					return err
				}
			}
			out := map[string]any{"resources": results}
			if api != nil {
				if writeKey == "" {
					return fmt.Errorf("every object was rewritten, but cluster %s's plugin has not reported a key version: no key marked retirable", cluster)
				}
				var c wire.KMSCluster
				if err := api.do(cmd.Context(), http.MethodPost, kmsPath+"/"+url.PathEscape(cluster)+"/retire", wire.KMSRetireRequest{WriteKeyID: writeKey}, &c); err != nil {
					return err
				}
				out["writeKeyId"] = writeKey
				out["retirableKeys"] = len(c.DecryptOnlyKeys)
			}
			var lines []string
			for _, r := range results {
				lines = append(lines, fmt.Sprintf("%s: %d rewritten, %d deleted meanwhile", r.Resource, r.Rewritten, r.Gone))
			}
			if writeKey != "" {
				lines = append(lines, "earlier keys marked retirable; every object is now under "+writeKey)
			}
			return printDone(cmd, out, strings.Join(lines, "\n"))
		},
	}
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (an identity that may get, list and update the resources)")
	cmd.Flags().StringVar(&cluster, "cluster", "", "the Coffer cluster whose decrypt-only keys to mark retirable when done")
	cmd.Flags().StringSliceVar(&resources, "resource", []string{"secrets"}, "resources to rewrite: secrets, configmaps, or RESOURCE.VERSION.GROUP (repeatable)")
	return cmd
}

// bar is a 30-column progress bar.
func bar(done, total int) string {
	if total <= 0 {
		return "[" + strings.Repeat(" ", 30) + "]"
	}
	n := done * 30 / total
	return "[" + strings.Repeat("#", n) + strings.Repeat(" ", 30-n) + "]"
}
