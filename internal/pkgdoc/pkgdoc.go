// Package pkgdoc holds checks that span the whole repository (its tests), such as "every
// package says what it is for". It has no code of its own.
package pkgdoc
