// Package reencrypt rewrites Kubernetes resources through the Kubernetes API so that the
// apiserver stores each under its current KMS key (docs/kms.md): every object of each named
// resource is read and written back unchanged (an update with its resourceVersion), which
// the apiserver encrypts with its current seed. It is what `coffer kms reencrypt` runs, and
// the same thing a StorageVersionMigration does inside the cluster.
package reencrypt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

// Progress hears about every object rewritten (done of total so far, total grows as pages
// are listed).
type Progress func(resource string, done, total int)

// Result counts what was rewritten.
type Result struct {
	Resource  string `json:"resource"`
	Rewritten int    `json:"rewritten"`
	// Gone were deleted between the list and the write.
	Gone int `json:"gone"`
}

// Client rewrites resources of one cluster.
type Client struct {
	dyn dynamic.Interface
}

// FromKubeconfig builds a client from a kubeconfig file.
func FromKubeconfig(path string) (*Client, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig %s: %w", path, err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Client{dyn: dyn}, nil
}

// ParseResource turns "secrets", "configmaps" or "RESOURCE.VERSION.GROUP" into a resource.
func ParseResource(s string) (schema.GroupVersionResource, error) {
	switch strings.ToLower(s) {
	case "secrets", "secret":
		return schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, nil
	case "configmaps", "configmap":
		return schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}, nil
	}
	if gvr, _ := schema.ParseResourceArg(s); gvr != nil {
		return *gvr, nil
	}
	return schema.GroupVersionResource{}, fmt.Errorf("resource %q: use secrets, configmaps or RESOURCE.VERSION.GROUP (for example widgets.v1.example.com)", s)
}

// Rewrite rewrites every object of gvr, in every namespace, 100 per list page.
func (c *Client) Rewrite(ctx context.Context, gvr schema.GroupVersionResource, progress Progress) (Result, error) {
	res := Result{Resource: gvr.String()}
	ri := c.dyn.Resource(gvr)
	total := 0
	cont := ""
	for {
		list, err := ri.List(ctx, metav1.ListOptions{Limit: 100, Continue: cont})
		if err != nil {
			return res, fmt.Errorf("list %s: %w", gvr.Resource, err)
		}
		total += len(list.Items)
		for i := range list.Items {
			obj := &list.Items[i]
			for attempt := 0; ; attempt++ {
				_, err := ri.Namespace(obj.GetNamespace()).Update(ctx, obj, metav1.UpdateOptions{})
				if err == nil {
					res.Rewritten++
					break
				}
				if apierrors.IsNotFound(err) {
					res.Gone++
					break
				}
				if !apierrors.IsConflict(err) || attempt >= 5 {
					return res, fmt.Errorf("rewrite %s %s/%s: %w", gvr.Resource, obj.GetNamespace(), obj.GetName(), err)
				}
				// Changed since the list: it was written under the current key already, but
				// write it again from a fresh read to be sure.
				fresh, gerr := ri.Namespace(obj.GetNamespace()).Get(ctx, obj.GetName(), metav1.GetOptions{})
				if apierrors.IsNotFound(gerr) {
					res.Gone++
					break
				}
				if gerr != nil {
					return res, errors.Join(err, gerr)
				}
				obj = fresh
			}
			if progress != nil {
				progress(gvr.Resource, res.Rewritten+res.Gone, total)
			}
		}
		cont = list.GetContinue()
		if cont == "" {
			return res, nil
		}
	}
}
