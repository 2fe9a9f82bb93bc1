package userservice

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// TestAllCommandsListsEveryCommand parses the package's sources for types with a
// command method: AllCommands must list each exactly once, or the cluster cannot
// send the missing one to another node.
func TestAllCommandsListsEveryCommand(t *testing.T) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		t.Fatal(err)
	}
	var declared []string
	for _, f := range pkgs["userservice"].Files {
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "command" || len(fn.Recv.List) != 1 {
				continue
			}
			if id, ok := fn.Recv.List[0].Type.(*ast.Ident); ok {
				declared = append(declared, id.Name)
			}
		}
	}
	var listed []string
	for _, c := range AllCommands() {
		listed = append(listed, reflect.TypeOf(c).Name())
	}
	sort.Strings(declared)
	sort.Strings(listed)
	if len(declared) < 10 || !reflect.DeepEqual(declared, listed) {
		t.Fatalf("commands declared %v,\nAllCommands lists %v", declared, listed)
	}
}
