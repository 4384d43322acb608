#!/bin/sh
# version.sh prints the project's version as a semantic version (semver.org),
# without the leading "v", from the git tags:
#
#   on tag v1.2.3                  1.2.3
#   4 commits after tag v1.2.3     1.2.4-dev.4+g0f2eab4
#   no v* tag yet, 123 commits     0.0.0-dev.123+g0f2eab4
#   uncommitted changes            ... +g0f2eab4.dirty (or 1.2.3+dirty)
#
# Commits after a tag get the next patch version as a pre-release, so that
# they sort after the tag and before the next release, both as semver and
# as Debian versions (debversion.sh); git describe's "1.2.3-4-g0f2eab4"
# would read as a pre-release of 1.2.3 and sort before it. Outside a git
# work tree it prints 0.0.0-dev+unknown.
set -eu

cd "$(dirname "$0")/../.."
if ! git rev-parse --git-dir >/dev/null 2>&1; then
	echo 0.0.0-dev+unknown
	exit 0
fi
hash=$(git rev-parse --short=7 HEAD)
dirty=
if ! git diff-index --quiet HEAD -- 2>/dev/null; then
	dirty=dirty
fi

# The newest release tag: vMAJOR.MINOR.PATCH, optionally -PRERELEASE.
if desc=$(git describe --tags --long --match 'v[0-9]*.[0-9]*.[0-9]*' 2>/dev/null); then
	# desc is TAG-N-gHASH; the tag itself may contain hyphens.
	n=${desc%-g*}
	tag=${n%-*}
	n=${n##*-}
	base=${tag#v}
	if [ "$n" = 0 ]; then
		echo "$base${dirty:++$dirty}"
		exit 0
	fi
	case $base in
	*-*)	# a pre-release tag (1.2.3-rc.1): count on from it
		echo "$base.dev.$n+g$hash${dirty:+.$dirty}" ;;
	*)	major=${base%%.*}; rest=${base#*.}; minor=${rest%%.*}; patch=${rest#*.}
		echo "$major.$minor.$((patch + 1))-dev.$n+g$hash${dirty:+.$dirty}" ;;
	esac
	exit 0
fi
n=$(git rev-list --count HEAD)
echo "0.0.0-dev.$n+g$hash${dirty:+.$dirty}"
