#!/bin/bash
# The man pages are the documentation of record: every option in a
# command's SYNOPSIS is in its --help and every long option in --help is in
# the SYNOPSIS; every command 'qshard --help' lists has its page, its
# entry in qshard(1) and its line in qshard(1)'s SYNOPSIS.
. "$top_srcdir/tests/cli/lib.sh"

cmds=$("$QSHARD" --help | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }')
[ -n "$cmds" ] || fail "qshard --help lists no commands"
main=$(sed 's/\\-/-/g' "$top_srcdir/man/qshard.1")
for cmd in $cmds; do
	page="$top_srcdir/man/qshard-$cmd.1"
	[ -f "$page" ] || fail "no man page for $cmd"
	grep -qxF ".BR $cmd \" \\(em \" qshard-$cmd (1)" <<<"$main" ||
		fail "$cmd is missing from qshard(1) COMMANDS"
	grep -qxF ".B qshard $cmd" <<<"$main" || fail "$cmd is missing from qshard(1) SYNOPSIS"
	# the SYNOPSIS section, with groff escapes for '-' removed
	sed -n '/^\.SH SYNOPSIS/,/^\.SH /p' "$page" | sed 's/\\-/-/g' |
		grep -oE -- '--?[a-zA-Z][a-zA-Z-]*' | sort -u >"$T/man"
	"$QSHARD" "$cmd" --help | grep -oE -- '--[a-z][a-z-]*' | sort -u >"$T/help"
	grep -vx -- '--help' "$T/help" >"$T/help2"
	# short options in the synopsis must be in --help too
	while read -r opt; do
		"$QSHARD" "$cmd" --help | grep -qE -- "(^|[ ,])$opt([ ,=]|$)" ||
			fail "$cmd: '$opt' is in the SYNOPSIS but not in --help"
	done <"$T/man"
	# a long option is in the SYNOPSIS itself or through its short alias
	while read -r opt; do
		grep -qx -- "$opt" "$T/man" && continue
		short=$("$QSHARD" "$cmd" --help | grep -E -- "(^|[ ,])$opt([ ,=]|$)" |
			grep -oE -- '^ +-[a-zA-Z],' | tr -d ' ,')
		[ -n "$short" ] && grep -qx -- "$short" "$T/man" ||
			fail "$cmd: '$opt' is in --help but not in the SYNOPSIS"
	done <"$T/help2"
	# every long option in --help is described in the page
	while read -r opt; do
		sed 's/\\-/-/g' "$page" | grep -q -- "$opt" || fail "$cmd: '$opt' undocumented"
	done <"$T/help2"
done
echo "PASS man_synopsis"
