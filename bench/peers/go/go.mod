module curfew.invalid/bench/peers/go

go 1.19

require golang.org/x/sync v0.1.0

// Debian's golang-golang-x-sync-dev: built offline, no module download.
replace golang.org/x/sync => /usr/share/gocode/src/golang.org/x/sync
