#!/bin/sh
# debversion.sh turns a semantic version (version.sh) into a Debian
# version: the pre-release's "-" becomes "~", which dpkg sorts before the
# release (1.2.4~dev.4 < 1.2.4), and build metadata stays after "+".
# Debian keeps "-" for the package revision, so none may remain.
set -eu
v=${1:?usage: debversion.sh SEMVER}
core=${v%%[-+]*}
rest=${v#"$core"}
pre=
case $rest in
-*) pre=${rest#-}; pre=${pre%%+*}; rest=${rest#-"$pre"} ;;
esac
echo "$core${pre:+~$(echo "$pre" | tr - .)}$rest" | tr - .
