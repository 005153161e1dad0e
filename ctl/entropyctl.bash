# entropyctl(1) completion                                  -*- shell-script -*-
# entropyctl.bash: bash completion for entropyctl: global options, commands, each command's
# options, job ids (from list-jobs) and worker ids (from list-workers) of the control plane the
# command line points at.

__entropyctl_globals() {
    # The global options already typed (transport and bus), so lookups go to the same place.
    local i out=()
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            --url=*|--token-file=*|--user-bus|--user-bus=*) out+=("${COMP_WORDS[i]}") ;;
        esac
    done
    (( ${#out[@]} )) && printf '%s\n' "${out[@]}"
}

__entropyctl_ids() {
    # $1: list-jobs or list-workers
    local g
    mapfile -t g < <(__entropyctl_globals)
    entropyctl "${g[@]}" --no-legend --no-pager "$1" 2>/dev/null | awk '{print $1}'
}

_entropyctl() {
    local cur prev words cword
    _init_completion -s 2>/dev/null || {
        cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}
        words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD
    }

    local global_opts='--help --version --config= --url= --token-file= --worker-token-file= --output=
                       --no-legend --no-pager --user-bus --timeout='
    local verbs='submit list-jobs status abort list-workers drain resume events reconcile replay reload'
    local -A verb_opts=(
        [submit]='--priority= --requirement= --gpu --at= --timeout= --max-attempts= --working-directory= --wait --'
        [list-jobs]='--state= --worker='
        [abort]='--worker= --reason='
        [events]='--follow --job= --worker= --since= --limit='
        [replay]='--worker='
    )

    local i verb=
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            -*) ;;
            *) verb=${words[i]}; break ;;
        esac
    done

    case $cur in
        --output=*)
            COMPREPLY=($(compgen -W 'table json json-pretty' -- "${cur#--output=}")); return ;;
        --state=*)
            COMPREPLY=($(compgen -W 'PENDING ASSIGNED RUNNING COMPLETED FAILED RETRYING LOST ABORTED' -- "${cur#--state=}")); return ;;
        --worker=*)
            COMPREPLY=($(compgen -W "$(__entropyctl_ids list-workers)" -- "${cur#--worker=}")); return ;;
        --job=*)
            COMPREPLY=($(compgen -W "$(__entropyctl_ids list-jobs)" -- "${cur#--job=}")); return ;;
        --config=*|--token-file=*|--worker-token-file=*)
            COMPREPLY=($(compgen -f -- "${cur#*=}")); return ;;
    esac

    if [[ -z $verb ]]; then
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "$global_opts" -- "$cur"))
            [[ ${COMPREPLY-} == *= ]] && compopt -o nospace 2>/dev/null
        else
            COMPREPLY=($(compgen -W "$verbs" -- "$cur"))
        fi
        return
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "${verb_opts[$verb]-}" -- "$cur"))
        [[ ${COMPREPLY-} == *= ]] && compopt -o nospace 2>/dev/null
        return
    fi
    case $verb in
        status|abort) COMPREPLY=($(compgen -W "$(__entropyctl_ids list-jobs)" -- "$cur")) ;;
        drain|resume) COMPREPLY=($(compgen -W "$(__entropyctl_ids list-workers)" -- "$cur")) ;;
        replay) COMPREPLY=($(compgen -f -- "$cur")) ;;
        submit) COMPREPLY=($(compgen -c -- "$cur")) ;;
    esac
}

complete -F _entropyctl entropyctl
