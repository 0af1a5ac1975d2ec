package importer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// importState is what `credport import --resume` needs: per input, the finished records
// (imported, or rejected with a 4xx or as invalid) and the connection ids the tool assigned to
// records that are not finished yet.
type importState struct {
	path string
	// saveMu serialises writes of the file; mu guards the contents.
	saveMu sync.Mutex
	mu     sync.Mutex
	Files  map[string]*fileState `json:"files"`
}

type fileState struct {
	Size int64 `json:"size"`
	// Sum is the SHA-256 of the file's content; absent in states of older versions.
	Sum string `json:"sum,omitempty"`
	// DoneThrough: records 1..DoneThrough are finished.
	DoneThrough int `json:"done_through"`
	// Done lists finished records after DoneThrough.
	Done []int `json:"done,omitempty"`
	// IDs are the connection ids assigned to unfinished records that came without one.
	IDs  map[int]string `json:"ids,omitempty"`
	done map[int]bool
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (*importState, error) {
	s := &importState{path: path, Files: map[string]*fileState{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, s); err != nil {
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	if s.Files == nil {
		s.Files = map[string]*fileState{}
	}
	for _, f := range s.Files {
		f.done = map[int]bool{}
		for _, n := range f.Done {
			f.done[n] = true
		}
		if f.IDs == nil {
			f.IDs = map[int]string{}
		}
	}
	return s, nil
}

// file returns the state of an input, starting it afresh when fresh is set or when the input's
// size or content differs from the recorded one; reset reports the latter.
func (s *importState) file(key string, size int64, sum string, fresh bool) (f *fileState, reset bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f = s.Files[key]
	if f != nil && !fresh && f.Size == size && (f.Sum == "" || f.Sum == sum) {
		f.Sum = sum
		return f, false
	}
	reset = f != nil && !fresh
	f = &fileState{Size: size, Sum: sum, IDs: map[int]string{}, done: map[int]bool{}}
	s.Files[key] = f
	return f, reset
}

func (s *importState) finished(f *fileState, n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return n <= f.DoneThrough || f.done[n]
}

// assignedID is the id given to record n in an earlier run, if any.
func (s *importState) assignedID(f *fileState, n int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return f.IDs[n]
}

func (s *importState) assign(f *fileState, n int, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.IDs[n] = id
}

func (s *importState) finish(f *fileState, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(f.IDs, n)
	if n <= f.DoneThrough {
		return
	}
	f.done[n] = true
	for f.done[f.DoneThrough+1] {
		delete(f.done, f.DoneThrough+1)
		f.DoneThrough++
	}
}

// save writes the state atomically: a temporary file beside it, synced, then renamed over it.
func (s *importState) save() error {
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	s.mu.Lock()
	for _, f := range s.Files {
		f.Done = f.Done[:0]
		for n := range f.done {
			f.Done = append(f.Done, n)
		}
		slices.Sort(f.Done)
	}
	data, err := json.Marshal(s)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	dir := filepath.Dir(s.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(s.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), s.path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
