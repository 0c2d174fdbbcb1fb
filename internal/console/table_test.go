package console

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestTable: a table sorts by the column its address names, both ways, defaults to the
// first column, pages pageSize rows at a time, and its links keep the page's other
// parameters (another table's sort) while changing only its own.
func TestTable(t *testing.T) {
	type row struct {
		name string
		size int
	}
	var rows []row
	for i := range pageSize + 7 {
		rows = append(rows, row{fmt.Sprintf("r%03d", (i*37)%(pageSize+7)), i})
	}
	cols := []column[row]{col("name", byString(func(r row) string { return r.name })), col("size", byNumber(func(r row) int { return r.size }))}
	get := func(q string) ([]row, tableView) {
		return table(httptest.NewRequest("GET", "/console/x?"+q, nil), "t", rows, cols...)
	}
	page, tv := get("")
	if len(page) != pageSize || page[0].name != "r000" || tv.Sort != "name" || tv.Desc || tv.Pages != 2 || tv.Total != pageSize+7 {
		t.Fatalf("default: %d rows from %s, view %+v", len(page), page[0].name, tv)
	}
	page, tv = get("t.sort=-size&t.page=2&other.sort=x")
	if len(page) != 7 || page[0].size != 6 || page[6].size != 0 || !tv.Desc || tv.Page != 2 {
		t.Fatalf("size descending, page 2: %+v, view %+v", page, tv)
	}
	h := string(sortHeader(tv, "size", "Size"))
	if !strings.Contains(h, `aria-sort="descending"`) || !strings.Contains(h, "t.sort=size") || !strings.Contains(h, "other.sort=x") || strings.Contains(h, "t.page") {
		t.Fatalf("header %s", h)
	}
	p := string(pager(tv))
	if !strings.Contains(p, "Page 2 of 2") || !strings.Contains(p, "t.sort=-size") || strings.Contains(p, `rel="next"`) || !strings.Contains(p, `rel="prev"`) {
		t.Fatalf("pager %s", p)
	}
	if page, tv = get("t.sort=bogus&t.page=99"); tv.Sort != "name" || tv.Page != 2 || len(page) != 7 {
		t.Fatalf("bad parameters: view %+v", tv)
	}
	if h := string(sortHeader(tableView{ID: "t", Sort: "name"}, "x", `<b>`)); strings.Contains(h, "<b>") {
		t.Fatalf("label not escaped: %s", h)
	}
	if _, tv := table(httptest.NewRequest("GET", "/", nil), "t", []row(nil), cols...); pager(tv) != "" || tv.Pages != 1 {
		t.Fatal("an empty table has pages")
	}
}
