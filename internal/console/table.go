package console

import (
	"cmp"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// column is one sortable column of a table: its key in the URL and its order.
type column[T any] struct {
	key string
	cmp func(a, b T) int
}

func col[T any](key string, f func(a, b T) int) column[T] { return column[T]{key, f} }

func byString[T any](f func(T) string) func(a, b T) int {
	return func(a, b T) int { return strings.Compare(strings.ToLower(f(a)), strings.ToLower(f(b))) }
}

func byTime[T any](f func(T) time.Time) func(a, b T) int {
	return func(a, b T) int { return f(a).Compare(f(b)) }
}

func byNumber[T any, N cmp.Ordered](f func(T) N) func(a, b T) int {
	return func(a, b T) int { return cmp.Compare(f(a), f(b)) }
}

// tableView is a table's state from the page's address: which column sorts it, which way,
// and which page shows. Each table has its own parameters (ID.sort=KEY or -KEY, ID.page=N),
// so several tables on one page sort and page independently and the address can be
// bookmarked and shared.
type tableView struct {
	ID                 string
	Sort               string
	Desc               bool
	Page, Pages, Total int
	query              url.Values
}

// table sorts rows as the address asks (the first column ascending by default) and cuts
// the page shown, pageSize rows each.
func table[T any](r *http.Request, id string, rows []T, cols ...column[T]) ([]T, tableView) {
	q := r.URL.Query()
	tv := tableView{ID: id, Total: len(rows), query: q}
	want := q.Get(id + ".sort")
	desc := strings.HasPrefix(want, "-")
	want = strings.TrimPrefix(want, "-")
	i := slices.IndexFunc(cols, func(c column[T]) bool { return c.key == want })
	if i < 0 {
		i, desc = 0, false
	}
	out := slices.Clone(rows)
	if len(cols) > 0 {
		tv.Sort, tv.Desc = cols[i].key, desc
		f := cols[i].cmp
		if desc {
			slices.SortStableFunc(out, func(a, b T) int { return f(b, a) })
		} else {
			slices.SortStableFunc(out, f)
		}
	}
	tv.Pages = max(1, (len(out)+pageSize-1)/pageSize)
	tv.Page, _ = strconv.Atoi(q.Get(id + ".page"))
	tv.Page = min(max(tv.Page, 1), tv.Pages)
	lo := (tv.Page - 1) * pageSize
	return out[lo:min(lo+pageSize, len(out))], tv
}

// link is the page's address with this table's parameters changed.
func (tv tableView) link(sort string, page int) string {
	q := url.Values{}
	for k, v := range tv.query {
		q[k] = v
	}
	if sort != "" {
		q.Set(tv.ID+".sort", sort)
	}
	q.Del(tv.ID + ".page")
	if page > 1 {
		q.Set(tv.ID+".page", strconv.Itoa(page))
	}
	return "?" + q.Encode()
}

// sortHeader is a column heading that sorts the table by key (again: the other way), with
// aria-sort on the current column.
func sortHeader(tv tableView, key, label string) template.HTML {
	next, aria, mark := key, "", ""
	if tv.Sort == key {
		aria, mark = ` aria-sort="ascending"`, " ▲"
		if tv.Desc {
			aria, mark = ` aria-sort="descending"`, " ▼"
		} else {
			next = "-" + key
		}
	}
	return template.HTML(`<th` + aria + `><a href="` + template.HTMLEscapeString(tv.link(next, 1)) + `" data-sort="` +
		template.HTMLEscapeString(key) + `">` + template.HTMLEscapeString(label) + mark + `</a></th>`)
}

// pager links the table's other pages, when it has more than one.
func pager(tv tableView) template.HTML {
	if tv.Pages <= 1 {
		return ""
	}
	sort := tv.Sort
	if tv.Desc {
		sort = "-" + sort
	}
	var b strings.Builder
	b.WriteString(`<nav class="pager" aria-label="Pages" id="` + template.HTMLEscapeString(tv.ID) + `-pager">`)
	if tv.Page > 1 {
		b.WriteString(`<a rel="prev" href="` + template.HTMLEscapeString(tv.link(sort, tv.Page-1)) + `">Previous</a> `)
	}
	b.WriteString("Page " + strconv.Itoa(tv.Page) + " of " + strconv.Itoa(tv.Pages) + " (" + strconv.Itoa(tv.Total) + " rows)")
	if tv.Page < tv.Pages {
		b.WriteString(` <a rel="next" href="` + template.HTMLEscapeString(tv.link(sort, tv.Page+1)) + `">Next</a>`)
	}
	b.WriteString(`</nav>`)
	return template.HTML(b.String())
}

// deref is *t, or the zero time (sorted first) when unset.
func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
