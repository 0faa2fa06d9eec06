// Command golog keeps a small C2SP tlog-tiles log built with Go's own
// transparency-log code (golang.org/x/mod/sumdb/tlog and sumdb/note), and
// checks C2SP tlog-tiles trees with it. Suyuan's interoperability tests
// (tests/interop) use it in both directions: Suyuan reads the Go log, and Go
// reads `suyuan export` output.
//
// It is test tooling, built offline from Debian's golang-golang-x-mod-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o golog main.go
//
// Usage:
//
//	golog keygen NAME
//	    print a new signer key (line 1) and verifier key (line 2), note format
//	golog build -dir D -skey S -size N
//	    create the log in D, or grow it to N entries
//	golog checkpoint -dir D -skey S -size N
//	    print the signed checkpoint of the log's first N entries
//	golog prove -dir D -old A -new B
//	    print the RFC 9162 consistency proof between sizes A and B, base64 per line
//	golog inclusion -dir D -index I -size N
//	    print the RFC 9162 inclusion proof of entry I in the tree of size N
//	golog verify -dir D -vkey V [-since FILE]
//	    verify the C2SP tlog-tiles tree in D (e.g. a `suyuan export`) as a
//	    client would, then check every tile against the entries; print
//	    "OK <size> entries", or the reason on stderr and exit 1; with -since,
//	    also prove the tree extends the checkpoint in FILE
//
// The layout of D (C2SP tlog-tiles, "Merkle Tree" and "Log entries"):
// checkpoint, tile/<L>/<N>[.p/<W>] and tile/entries/<N>[.p/<W>]. Go's tile
// paths are tile/<H>/<L>/...; C2SP fixes H at 8 and leaves that element out,
// and Go's "data" level becomes C2SP's "entries" (with C2SP's bundle format).
//
// Entries are the byte strings entry(i) below, NOT Suyuan entries; one is
// empty and one is about 1000 bytes long. tests/interop/golog.py repeats the
// definition (go_entry) so tests can compare.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const (
	height     = 8 // C2SP tlog-tiles: tiles span 8 levels, 256 hashes wide
	tileWidth  = 1 << height
	emptyIndex = 5 // entry 5 is the empty byte string
	bigIndex   = 7 // entry 7 is 1000 bytes long
	bigSize    = 1000
)

// entry returns log entry i. Keep in step with go_entry in golog.py.
func entry(i int64) []byte {
	switch i {
	case emptyIndex:
		return []byte{}
	case bigIndex:
		head := fmt.Sprintf("go-entry-%d ", i)
		body := strings.Repeat("0123456789", bigSize/10)
		return []byte(head + body[:bigSize-len(head)-1] + "\n")
	}
	return []byte(fmt.Sprintf("go-entry-%d%s\n", i, strings.Repeat(" ~", int(i%23))))
}

// tilePath is the C2SP path of a hash tile (t.L >= 0) or entry bundle (t.L == -1).
func tilePath(t tlog.Tile) string {
	p := t.Path() // tile/8/<L>/<N>[.p/<W>] or tile/8/data/<N>[.p/<W>]
	prefix := fmt.Sprintf("tile/%d/", height)
	if !strings.HasPrefix(p, prefix) {
		panic("unexpected tile path " + p)
	}
	rest := strings.TrimPrefix(p, prefix)
	if t.L == -1 {
		return "tile/entries/" + strings.TrimPrefix(rest, "data/")
	}
	return "tile/" + rest
}

// treeHash is MTH(D[0:n]); tlog.TreeHash has no answer for the empty tree.
func treeHash(n int64, r tlog.HashReader) (tlog.Hash, error) {
	if n == 0 {
		return tlog.Hash(sha256.Sum256(nil)), nil
	}
	return tlog.TreeHash(n, r)
}

// checkpointText is a C2SP tlog-checkpoint body: origin, decimal size, base64 root.
func checkpointText(origin string, n int64, root tlog.Hash) string {
	return fmt.Sprintf("%s\n%d\n%s\n", origin, n, base64.StdEncoding.EncodeToString(root[:]))
}

// parseCheckpoint parses a checkpoint note text strictly enough for these tests.
func parseCheckpoint(text string) (origin string, tree tlog.Tree, err error) {
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if !strings.HasSuffix(text, "\n") || len(lines) < 3 {
		return "", tlog.Tree{}, fmt.Errorf("malformed checkpoint text %q", text)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || strconv.FormatInt(n, 10) != lines[1] {
		return "", tlog.Tree{}, fmt.Errorf("malformed checkpoint size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		return "", tlog.Tree{}, fmt.Errorf("malformed checkpoint root %q", lines[2])
	}
	tree.N = n
	copy(tree.Hash[:], raw)
	return lines[0], tree, nil
}

// openCheckpoint verifies a checkpoint note with v; its origin must be v's name.
func openCheckpoint(msg []byte, v note.Verifier) (tlog.Tree, error) {
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		return tlog.Tree{}, err
	}
	origin, tree, err := parseCheckpoint(n.Text)
	if err != nil {
		return tlog.Tree{}, err
	}
	if origin != v.Name() {
		return tlog.Tree{}, fmt.Errorf("checkpoint origin %q is not the key name %q", origin, v.Name())
	}
	return tree, nil
}

// verifierForSigner derives the vkey of a note signer key (PRIVATE+KEY+name+hash+base64).
func verifierForSigner(skey string) (note.Signer, note.Verifier, error) {
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, nil, err
	}
	fields := strings.SplitN(skey, "+", 5)
	raw, err := base64.StdEncoding.DecodeString(fields[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize {
		return nil, nil, errors.New("malformed skey")
	}
	pub := ed25519.NewKeyFromSeed(raw[1:]).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), pub)
	if err != nil {
		return nil, nil, err
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, nil, err
	}
	return signer, verifier, nil
}

// encodeBundle is a C2SP entry bundle: big-endian uint16 length, then the entry.
func encodeBundle(entries [][]byte) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		if len(e) > 0xFFFF {
			panic("entry too long for a bundle")
		}
		var n [2]byte
		binary.BigEndian.PutUint16(n[:], uint16(len(e)))
		b.Write(n[:])
		b.Write(e)
	}
	return b.Bytes()
}

func decodeBundle(data []byte, want int) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("truncated length prefix")
		}
		n := int(binary.BigEndian.Uint16(data))
		if len(data) < 2+n {
			return nil, errors.New("truncated entry")
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	if len(out) != want {
		return nil, fmt.Errorf("%d entries, want %d", len(out), want)
	}
	return out, nil
}

// memLog is the log's stored hashes (tlog's storage order), kept in memory.
type memLog struct {
	n      int64
	hashes []tlog.Hash
}

func (m *memLog) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m.hashes)) {
			return nil, fmt.Errorf("hash index %d not stored (%d stored)", x, len(m.hashes))
		}
		out[i] = m.hashes[x]
	}
	return out, nil
}

func (m *memLog) add(data []byte) error {
	hs, err := tlog.StoredHashes(m.n, data, m)
	if err != nil {
		return err
	}
	m.hashes = append(m.hashes, hs...)
	m.n++
	return nil
}

// load reads the log in dir: the size its checkpoint states, and the stored
// hashes recomputed from its entry bundles, which must give the checkpoint's
// root. With v == nil the checkpoint's signature is not checked. With
// 0 <= limit < the checkpoint's size, only the first limit entries are read
// (enough for proofs in trees of up to limit entries) and the root is not
// checked.
func load(dir string, v note.Verifier, limit int64) (*memLog, tlog.Tree, error) {
	m := &memLog{}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if errors.Is(err, fs.ErrNotExist) {
		return m, tlog.Tree{}, nil
	} else if err != nil {
		return nil, tlog.Tree{}, err
	}
	var tree tlog.Tree
	if v != nil {
		tree, err = openCheckpoint(msg, v)
	} else {
		var text string
		if text, err = unverifiedText(msg); err == nil {
			_, tree, err = parseCheckpoint(text)
		}
	}
	if err != nil {
		return nil, tlog.Tree{}, fmt.Errorf("%s/checkpoint: %v", dir, err)
	}
	if limit < 0 || limit > tree.N {
		limit = tree.N
	}
	for start := int64(0); start < limit; start += tileWidth {
		w := tree.N - start
		if w > tileWidth {
			w = tileWidth
		}
		t := tlog.Tile{H: height, L: -1, N: start / tileWidth, W: int(w)}
		data, err := os.ReadFile(filepath.Join(dir, tilePath(t)))
		if err != nil {
			return nil, tlog.Tree{}, err
		}
		entries, err := decodeBundle(data, int(w))
		if err != nil {
			return nil, tlog.Tree{}, fmt.Errorf("%s: %v", tilePath(t), err)
		}
		for _, e := range entries {
			if m.n == limit {
				break
			}
			if err := m.add(e); err != nil {
				return nil, tlog.Tree{}, err
			}
		}
	}
	if limit < tree.N {
		return m, tree, nil
	}
	root, err := treeHash(tree.N, m)
	if err != nil {
		return nil, tlog.Tree{}, err
	}
	if root != tree.Hash {
		return nil, tlog.Tree{}, fmt.Errorf("%s: entry bundles do not give the checkpoint's root", dir)
	}
	return m, tree, nil
}

func unverifiedText(msg []byte) (string, error) {
	_, err := note.Open(msg, nil)
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		return unverified.Note.Text, nil
	}
	if err == nil {
		return "", errors.New("note opened with no verifiers")
	}
	return "", err
}

// writeFile writes atomically. A full tile or bundle is immutable: an existing
// file with other content is an error, never overwritten.
func writeFile(path string, data []byte, immutable bool) error {
	old, err := os.ReadFile(path)
	if err == nil {
		if bytes.Equal(old, data) {
			return nil
		}
		if immutable {
			return fmt.Errorf("%s exists with different content", path)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func signCheckpoint(signer note.Signer, m *memLog, n int64) ([]byte, error) {
	root, err := treeHash(n, m)
	if err != nil {
		return nil, err
	}
	return note.Sign(&note.Note{Text: checkpointText(signer.Name(), n, root)}, signer)
}

// build grows the log in dir to size n: new entry bundles, the tiles
// tlog.NewTiles names for the growth (only each level's final partial width:
// C2SP serves the partial tiles of checkpointed sizes), then the checkpoint.
func build(dir, skey string, n int64) error {
	signer, verifier, err := verifierForSigner(skey)
	if err != nil {
		return err
	}
	m, old, err := load(dir, verifier, -1)
	if err != nil {
		return err
	}
	if n < old.N {
		return fmt.Errorf("the log in %s has %d entries; cannot shrink it to %d", dir, old.N, n)
	}
	for i := old.N; i < n; i++ {
		if err := m.add(entry(i)); err != nil {
			return err
		}
	}
	for start := old.N / tileWidth * tileWidth; start < n; start += tileWidth {
		end := start + tileWidth
		if end > n {
			end = n
		}
		var entries [][]byte
		for i := start; i < end; i++ {
			entries = append(entries, entry(i))
		}
		t := tlog.Tile{H: height, L: -1, N: start / tileWidth, W: int(end - start)}
		if err := writeFile(filepath.Join(dir, tilePath(t)), encodeBundle(entries), t.W == tileWidth); err != nil {
			return err
		}
	}
	for _, t := range tlog.NewTiles(height, old.N, n) {
		if t.W != tileWidth && int64(t.W) != (n>>(height*t.L))%tileWidth {
			continue // an intermediate width no checkpoint has
		}
		data, err := tlog.ReadTileData(t, m)
		if err != nil {
			return err
		}
		if err := writeFile(filepath.Join(dir, tilePath(t)), data, t.W == tileWidth); err != nil {
			return err
		}
	}
	msg, err := signCheckpoint(signer, m, n)
	if err != nil {
		return err
	}
	return writeFile(filepath.Join(dir, "checkpoint"), msg, false)
}

// dirTiles reads tiles from a C2SP tlog-tiles directory for tlog.TileHashReader.
type dirTiles struct {
	dir   string
	cache map[tlog.Tile][]byte
}

func (d *dirTiles) Height() int { return height }

func (d *dirTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		if data, ok := d.cache[t]; ok {
			out[i] = data
			continue
		}
		data, err := os.ReadFile(filepath.Join(d.dir, tilePath(t)))
		if err != nil {
			return nil, err
		}
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", tilePath(t), len(data), t.W*tlog.HashSize)
		}
		d.cache[t] = data
		out[i] = data
	}
	return out, nil
}

func (d *dirTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// verify checks the tree in dir through its tiles alone, as a client would,
// then checks that it is complete.
//
// Client path: the checkpoint's signature (note.Open); the tree hash and
// every leaf hash through tlog.TileHashReader; the leaf hashes at both ends
// of every level-0 tile by inclusion proofs (tlog.ProveRecord and
// tlog.CheckRecord) against the checkpoint's root; every entry against its
// leaf hash; with since, a consistency proof (tlog.ProveTree and
// tlog.CheckTree) from the older checkpoint.
//
// The inclusion proofs are not optional: tlog.TileHashReader (x/mod 0.7.0)
// authenticates a full tile against its parent only when the tiles for the
// tree hash are all distinct (its loop starts at len(stx), the number of
// tree-hash nodes, not of their tiles), so in a tree of, say, 613 entries it
// returns hashes from an unchecked tile/0/000. The proofs of a tile's first
// and last leaf together cover every other hash of the tile.
//
// Completeness: the root recomputed from the entries alone (tlog.StoredHashes)
// and every tile of the tree (tlog.ReadTileData) must equal what dir holds.
func verify(dir, vkey, since string) (int64, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return 0, fmt.Errorf("vkey: %v", err)
	}
	msg, err := os.ReadFile(filepath.Join(dir, "checkpoint"))
	if err != nil {
		return 0, err
	}
	tree, err := openCheckpoint(msg, v)
	if err != nil {
		return 0, fmt.Errorf("checkpoint: %v", err)
	}
	if tree.N == 0 {
		if tree.Hash != tlog.Hash(sha256.Sum256(nil)) {
			return 0, errors.New("checkpoint: size 0 with a root that is not the empty tree's")
		}
		return 0, nil
	}
	tiles := &dirTiles{dir: dir, cache: map[tlog.Tile][]byte{}}
	r := tlog.TileHashReader(tree, tiles)
	root, err := tlog.TreeHash(tree.N, r)
	if err != nil {
		return 0, fmt.Errorf("tree hash: %v", err)
	}
	if root != tree.Hash {
		return 0, errors.New("the tiles do not give the checkpoint's root")
	}
	m := &memLog{}
	for start := int64(0); start < tree.N; start += tileWidth {
		w := tree.N - start
		if w > tileWidth {
			w = tileWidth
		}
		leafTile := tlog.Tile{H: height, L: 0, N: start / tileWidth, W: int(w)}
		indexes := make([]int64, w)
		for i := range indexes {
			indexes[i] = tlog.StoredHashIndex(0, start+int64(i))
		}
		leaves, err := r.ReadHashes(indexes)
		if err != nil {
			return 0, fmt.Errorf("leaf hashes in %s: %v", tilePath(leafTile), err)
		}
		for _, i := range []int64{start, start + w - 1} {
			p, err := tlog.ProveRecord(tree.N, i, r)
			if err == nil {
				err = tlog.CheckRecord(p, tree.N, tree.Hash, i, leaves[i-start])
			}
			if err != nil {
				return 0, fmt.Errorf("%s: inclusion proof of entry %d: %v", tilePath(leafTile), i, err)
			}
		}
		bundle := tlog.Tile{H: height, L: -1, N: start / tileWidth, W: int(w)}
		data, err := os.ReadFile(filepath.Join(dir, tilePath(bundle)))
		if err != nil {
			return 0, err
		}
		entries, err := decodeBundle(data, int(w))
		if err != nil {
			return 0, fmt.Errorf("%s: %v", tilePath(bundle), err)
		}
		for i, e := range entries {
			if tlog.RecordHash(e) != leaves[i] {
				return 0, fmt.Errorf("entry %d in %s does not match its leaf hash", start+int64(i), tilePath(bundle))
			}
			if err := m.add(e); err != nil {
				return 0, err
			}
		}
	}
	if root, err := tlog.TreeHash(tree.N, m); err != nil || root != tree.Hash {
		return 0, fmt.Errorf("the entries do not give the checkpoint's root (%v)", err)
	}
	for _, t := range tlog.NewTiles(height, 0, tree.N) {
		if t.W != tileWidth && int64(t.W) != (tree.N>>(height*t.L))%tileWidth {
			continue
		}
		want, err := tlog.ReadTileData(t, m)
		if err != nil {
			return 0, err
		}
		got, err := tiles.ReadTiles([]tlog.Tile{t})
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(got[0], want) {
			return 0, fmt.Errorf("%s does not hold the hashes of the entries", tilePath(t))
		}
	}
	if since != "" {
		msg, err := os.ReadFile(since)
		if err != nil {
			return 0, err
		}
		old, err := openCheckpoint(msg, v)
		if err != nil {
			return 0, fmt.Errorf("%s: %v", since, err)
		}
		if old.N > tree.N {
			return 0, fmt.Errorf("the tree has %d entries, fewer than the %d of %s", tree.N, old.N, since)
		}
		if old.N > 0 {
			p, err := tlog.ProveTree(tree.N, old.N, r)
			if err != nil {
				return 0, fmt.Errorf("consistency proof: %v", err)
			}
			if err := tlog.CheckTree(p, tree.N, tree.Hash, old.N, old.Hash); err != nil {
				return 0, fmt.Errorf("the tree is not consistent with %s: %v", since, err)
			}
		}
	}
	return tree.N, nil
}

func printProof(hashes []tlog.Hash) {
	for _, h := range hashes {
		fmt.Println(base64.StdEncoding.EncodeToString(h[:]))
	}
}

// loadAtLeast loads the first n entries of the log in dir (checkpoint
// unverified: these commands only compute) and checks that it has that many.
func loadAtLeast(dir string, n int64) *memLog {
	m, tree, err := load(dir, nil, n)
	check(err)
	if n > tree.N {
		check(fmt.Errorf("the log in %s has %d entries, not %d", dir, tree.N, n))
	}
	return m
}

func check(err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "golog: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: golog keygen NAME | build -dir D -skey S -size N | "+
		"checkpoint -dir D -skey S -size N | prove -dir D -old A -new B | "+
		"inclusion -dir D -index I -size N | verify -dir D -vkey V [-since FILE]")
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	cmd := os.Args[1]
	if cmd == "keygen" {
		if len(os.Args) != 3 {
			usage()
		}
		skey, vkey, err := note.GenerateKey(rand.Reader, os.Args[2])
		check(err)
		fmt.Println(skey)
		fmt.Println(vkey)
		return
	}
	flags := flag.NewFlagSet(cmd, flag.ExitOnError)
	dir := flags.String("dir", "", "log directory")
	skey := flags.String("skey", "", "note signer key")
	vkey := flags.String("vkey", "", "note verifier key")
	since := flags.String("since", "", "older checkpoint file")
	size := flags.Int64("size", -1, "tree size")
	oldSize := flags.Int64("old", -1, "older tree size")
	newSize := flags.Int64("new", -1, "newer tree size")
	index := flags.Int64("index", -1, "entry index")
	check(flags.Parse(os.Args[2:]))
	if *dir == "" || flags.NArg() != 0 {
		usage()
	}
	switch cmd {
	case "build":
		if *skey == "" || *size < 0 {
			usage()
		}
		check(build(*dir, *skey, *size))
		fmt.Printf("built %d entries in %s\n", *size, *dir)
	case "checkpoint":
		if *skey == "" || *size < 0 {
			usage()
		}
		signer, _, err := verifierForSigner(*skey)
		check(err)
		msg, err := signCheckpoint(signer, loadAtLeast(*dir, *size), *size)
		check(err)
		os.Stdout.Write(msg)
	case "prove":
		m := loadAtLeast(*dir, *newSize)
		p, err := tlog.ProveTree(*newSize, *oldSize, m)
		check(err)
		printProof(p)
	case "inclusion":
		m := loadAtLeast(*dir, *size)
		p, err := tlog.ProveRecord(*size, *index, m)
		check(err)
		printProof(p)
	case "verify":
		if *vkey == "" {
			usage()
		}
		n, err := verify(*dir, *vkey, *since)
		check(err)
		fmt.Printf("OK %d entries\n", n)
	default:
		usage()
	}
}
