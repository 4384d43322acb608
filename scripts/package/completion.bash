# bash completion for ironblade, ironaoe and ironbench.
#
# Installed as /usr/share/bash-completion/completions/{ironblade,ironaoe,ironbench}.
# The options are read from the program's own --help (the urfave/cli layout:
# "   --name VALUE, -n VALUE  usage"), so the completion follows the installed
# version without a list to keep in step; an option followed by a
# placeholder takes a value, and the placeholder's name says what to offer.

# _ironblade_help_options CMD... prints one line per option of CMD --help:
# the option, then "=" and its placeholder if it takes a value.
_ironblade_help_options() {
	LC_ALL=C "$@" --help 2>/dev/null | sed -nE '
		/^[[:space:]]+-/ {
			s/^[[:space:]]+//
			s/  .*//
			s/ \[ .*//
			s/, /\n/g
			p
		}' | sed -nE 's/^(-{1,2}[A-Za-z0-9][A-Za-z0-9-]*)( (.*))?$/\1=\3/p'
}

# _ironblade_commands PROG prints the commands listed by PROG --help.
_ironblade_commands() {
	LC_ALL=C "$1" --help 2>/dev/null | sed -nE '
		/^COMMANDS:/,/^$/ {
			/^COMMANDS:/d
			s/^[[:space:]]+([a-z][a-z0-9-]*).*/\1/p
		}' | grep -vx help
}

# _ironblade_values PLACEHOLDER CUR fills COMPREPLY with the values that
# suit an option's placeholder.
_ironblade_values() {
	case $1 in
	IFACE | netif) COMPREPLY=($(compgen -W "$(ls /sys/class/net 2>/dev/null)" -- "$2")) ;;
	LEVEL) COMPREPLY=($(compgen -W "debug info warn error" -- "$2")) ;;
	FORMAT) COMPREPLY=($(compgen -W "text json" -- "$2")) ;;
	POLICY) COMPREPLY=($(compgen -W "failover multipath" -- "$2")) ;;
	MODE) COMPREPLY=($(compgen -W "required optional" -- "$2")) ;;
	DIR) COMPREPLY=($(compgen -d -- "$2")) ;;
	FILE | PATH | filename) COMPREPLY=($(compgen -f -- "$2")) ;;
	*) COMPREPLY=() ;;
	esac
}

_ironblade_complete() {
	local prog=$1 cur=${COMP_WORDS[COMP_CWORD]} prev=
	((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
	# Run the program as typed (bin/ironaoe too) to read its help.
	local exe=${COMP_WORDS[0]}
	local -a cmd=("$exe") operands=()
	local i w spec cmds=
	# ironaoe and ironbench have commands; the first operand picks one.
	[[ $prog != ironblade ]] && cmds=$(_ironblade_commands "$exe")

	# Walk the words before the cursor: find the command, skip option
	# values, collect operands.
	local opts=$(_ironblade_help_options "${cmd[@]}")
	for ((i = 1; i < COMP_CWORD; i++)); do
		w=${COMP_WORDS[i]}
		if [[ $w == -* ]]; then
			spec=$(grep -m1 -- "^${w%%=*}=" <<<"$opts")
			[[ ${spec#*=} && $w != *=* ]] && ((i++))
		elif [[ $cmds && ${#cmd[@]} == 1 ]] && grep -qx -- "$w" <<<"$cmds"; then
			cmd+=("$w")
			opts=$(printf '%s\n%s\n' "$(_ironblade_help_options "${cmd[@]}")" \
				"$(_ironblade_help_options "$exe")")
		else
			operands+=("$w")
		fi
	done

	if [[ $prev == -* ]]; then
		spec=$(grep -m1 -- "^$prev=" <<<"$opts")
		if [[ ${spec#*=} ]]; then
			_ironblade_values "${spec#*=}" "$cur"
			return
		fi
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$(cut -d= -f1 <<<"$opts" | sort -u)" -- "$cur"))
		return
	fi
	if [[ $cmds && ${#cmd[@]} == 1 ]]; then
		COMPREPLY=($(compgen -W "$cmds" -- "$cur"))
		return
	fi
	case $prog:${cmd[1]:-}:${#operands[@]} in
	ironblade::2) _ironblade_values netif "$cur" ;;
	ironblade::3) _ironblade_values filename "$cur" ;;
	ironaoe:detach:0) COMPREPLY=($(compgen -W "$(ls -d /dev/nbd* 2>/dev/null)" -- "$cur")) ;;
	ironaoe:attach:1) COMPREPLY=($(compgen -W "$(ls -d /dev/nbd* 2>/dev/null)" -- "$cur")) ;;
	*) COMPREPLY=() ;;
	esac
}

_ironblade() { _ironblade_complete ironblade; }
_ironaoe() { _ironblade_complete ironaoe; }
_ironbench() { _ironblade_complete ironbench; }
complete -F _ironblade ironblade
complete -F _ironaoe ironaoe
complete -F _ironbench ironbench
