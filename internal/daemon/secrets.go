package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/nostr-homed/nostr-homed/internal/events"
)

// secretsName is the directory under RuntimeDir/UID that holds the session's secret files.
const secretsName = "secrets"

// openDirNoFollow opens the directory path, refusing a symbolic link in any component.
func openDirNoFollow(path string) (int, error) { return walkNoFollow(path, false) }

// walkNoFollow opens the directory path one component at a time with O_NOFOLLOW; with
// create, missing components are created (0755) as it goes, never through a link.
func walkNoFollow(path string, create bool) (int, error) {
	if !filepath.IsAbs(path) {
		return -1, fmt.Errorf("%q is not an absolute path", path)
	}
	fd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: "/", Err: err}
	}
	sofar := ""
	for _, c := range strings.Split(filepath.Clean(path), "/") {
		if c == "" {
			continue
		}
		sofar += "/" + c
		nfd, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err == unix.ENOENT && create {
			if err = unix.Mkdirat(fd, c, 0o755); err == nil || err == unix.EEXIST {
				nfd, err = unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
				if err == nil {
					err = unix.Fchmod(nfd, 0o755)
				}
			}
		}
		unix.Close(fd)
		if err != nil {
			if nfd >= 0 {
				unix.Close(nfd)
			}
			if err == unix.ELOOP || err == unix.ENOTDIR {
				return -1, fmt.Errorf("%s is a symbolic link or not a directory: refusing to go through it", sofar)
			}
			return -1, &os.PathError{Op: "open", Path: sofar, Err: err}
		}
		fd = nfd
	}
	return fd, nil
}

// runtimeDirFD opens RuntimeDir (creating it 0755 if missing) and checks that only this
// process's user (root) can change it.
func runtimeDirFD(rt string) (int, error) {
	fd, err := walkNoFollow(rt, true)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Uid != uint32(os.Geteuid()) || st.Mode&0o022 != 0 {
		unix.Close(fd)
		return -1, fmt.Errorf("runtime directory %s must be owned by uid %d and not writable by group or others (owner %d, mode %o)",
			rt, os.Geteuid(), st.Uid, st.Mode&0o7777)
	}
	return fd, nil
}

// writeSecrets writes files to RuntimeDir/UID/secrets/ (see the package doc) and returns
// that directory's path. Leftovers of an earlier session are wiped first.
func writeSecrets(rt string, uid, gid uint32, files []events.SecretFile) (string, error) {
	rfd, err := runtimeDirFD(rt)
	if err != nil {
		return "", err
	}
	defer unix.Close(rfd)
	name := strconv.FormatUint(uint64(uid), 10)
	if err := unix.Mkdirat(rfd, name, 0o700); err != nil && err != unix.EEXIST {
		return "", &os.PathError{Op: "mkdir", Path: filepath.Join(rt, name), Err: err}
	}
	ufd, err := unix.Openat(rfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("%s: not a directory or a symbolic link: %v", filepath.Join(rt, name), err)
	}
	defer unix.Close(ufd)
	if err := unix.Fchown(ufd, int(uid), int(gid)); err != nil {
		return "", err
	}
	if err := unix.Fchmod(ufd, 0o700); err != nil {
		return "", err
	}
	if err := wipeAt(ufd, secretsName); err != nil {
		return "", fmt.Errorf("wiping old secrets: %w", err)
	}
	dir := filepath.Join(rt, name, secretsName)
	// Root-owned while it is filled; handed to the user at the end.
	if err := unix.Mkdirat(ufd, secretsName, 0o700); err != nil {
		return "", &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	sfd, err := unix.Openat(ufd, secretsName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(sfd)
	if err := unix.Fchmod(sfd, 0o700); err != nil {
		return "", err
	}
	for _, f := range files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || strings.ContainsAny(f.Name, "/\x00") {
			return "", fmt.Errorf("secret file name %q is not a plain name", f.Name)
		}
		if err := writeSecretFile(sfd, f, uid, gid); err != nil {
			return "", fmt.Errorf("%s: %w", filepath.Join(dir, f.Name), err)
		}
	}
	if err := unix.Fchown(sfd, int(uid), int(gid)); err != nil {
		return "", err
	}
	return dir, nil
}

func writeSecretFile(dirfd int, f events.SecretFile, uid, gid uint32) error {
	fd, err := unix.Openat(dirfd, f.Name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	file := os.NewFile(uintptr(fd), f.Name)
	defer file.Close()
	if err := unix.Fchmod(fd, 0o600); err != nil {
		return err
	}
	if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
		return err
	}
	_, err = file.Write(f.Data)
	return err
}

// wipeSecrets zeroes and removes RuntimeDir/UID/secrets, and RuntimeDir/UID if it is then
// empty. Nothing there is not an error.
func wipeSecrets(rt string, uid uint32) error {
	rfd, err := openDirNoFollow(rt)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	name := strconv.FormatUint(uint64(uid), 10)
	ufd, err := unix.Openat(rfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err == unix.ENOENT {
		return nil
	}
	if err != nil {
		// A symlink or a file where the directory should be: remove the entry itself.
		return ignoreNotExist(unix.Unlinkat(rfd, name, 0))
	}
	err = wipeAt(ufd, secretsName)
	unix.Close(ufd)
	unix.Unlinkat(rfd, name, unix.AT_REMOVEDIR) // fails harmlessly if the user left something
	return err
}

func ignoreNotExist(err error) error {
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// wipeAt removes name under dirfd without following symbolic links: directories
// recursively, regular files overwritten with zeros first (only if they have one link, so
// that a hard link the user made to another file is unlinked, not zeroed).
func wipeAt(dirfd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return ignoreNotExist(err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return ignoreNotExist(unix.Unlinkat(dirfd, name, 0))
		}
		d := os.NewFile(uintptr(fd), name)
		names, rerr := d.Readdirnames(-1)
		var errs []error
		if rerr != nil {
			errs = append(errs, rerr)
		}
		for _, n := range names {
			if err := wipeAt(fd, n); err != nil {
				errs = append(errs, err)
			}
		}
		d.Close()
		if err := ignoreNotExist(unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)); err != nil {
			errs = append(errs, fmt.Errorf("rmdir %s: %w", name, err))
		}
		return errors.Join(errs...)
	case unix.S_IFREG:
		zeroFile(dirfd, name)
	}
	if err := ignoreNotExist(unix.Unlinkat(dirfd, name, 0)); err != nil {
		return fmt.Errorf("unlink %s: %w", name, err)
	}
	return nil
}

// zeroFile overwrites a regular file with zeros, best effort.
func zeroFile(dirfd int, name string) {
	fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return
	}
	zero := make([]byte, 4096)
	for off := int64(0); off < st.Size; off += int64(len(zero)) {
		n := min(int64(len(zero)), st.Size-off)
		if _, err := unix.Pwrite(fd, zero[:n], off); err != nil {
			return
		}
	}
	unix.Fsync(fd)
}

// listSecrets returns the names in RuntimeDir/UID/secrets (nil if there is none).
func listSecrets(rt string, uid uint32) []string {
	rfd, err := openDirNoFollow(rt)
	if err != nil {
		return nil
	}
	defer unix.Close(rfd)
	ufd, err := unix.Openat(rfd, strconv.FormatUint(uint64(uid), 10), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(ufd)
	sfd, err := unix.Openat(ufd, secretsName, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	d := os.NewFile(uintptr(sfd), secretsName)
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	sort.Strings(names)
	if names == nil {
		names = []string{}
	}
	return names
}

// makeMountPoint creates home (0700, owned by the user) if it is missing. The last component
// must not be a symbolic link; the parent (users.home_base) belongs to root.
func makeMountPoint(home string, uid, gid uint32) error {
	parent, name := filepath.Split(filepath.Clean(home))
	if name == "" || !filepath.IsAbs(home) {
		return fmt.Errorf("home %q is not an absolute path", home)
	}
	pfd, err := unix.Open(parent, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: parent, Err: err}
	}
	defer unix.Close(pfd)
	created := true
	if err := unix.Mkdirat(pfd, name, 0o700); err == unix.EEXIST {
		created = false
	} else if err != nil {
		return &os.PathError{Op: "mkdir", Path: home, Err: err}
	}
	fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if err == unix.ELOOP || err == unix.ENOTDIR {
			return fmt.Errorf("%s is a symbolic link or not a directory: refusing to mount on it", home)
		}
		return &os.PathError{Op: "open", Path: home, Err: err}
	}
	defer unix.Close(fd)
	if created {
		if err := unix.Fchown(fd, int(uid), int(gid)); err != nil {
			return err
		}
		if err := unix.Fchmod(fd, 0o700); err != nil {
			return err
		}
	}
	return nil
}
