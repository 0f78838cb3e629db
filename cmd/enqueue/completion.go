package main

import (
	"fmt"
)

func (a *app) cmdCompletion(args []string) error {
	fs := newFlagSet("completion", completionUsage, completionExamples, a.stdout)
	positional, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		return usageErrorf("give one shell: enqueue completion bash|zsh|fish")
	}
	script, ok := completionScripts[positional[0]]
	if !ok {
		return usageErrorf("no completion for shell %q: use bash, zsh or fish", positional[0])
	}
	_, err = fmt.Fprint(a.stdout, script)
	return err
}

// completionScripts complete commands, flags and flag values. Job IDs come from
// "enqueue list --quiet", which reads Redis through REDIS_URL when the shell has it.
var completionScripts = map[string]string{
	"bash": bashCompletion,
	"zsh":  zshCompletion,
	"fish": fishCompletion,
}

const bashCompletion = `# bash completion for enqueue. Load it with: source <(enqueue completion bash)
_enqueue() {
    local cur prev cmd i flags
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev="${COMP_WORDS[COMP_CWORD-1]}"
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            submit|status|results|cancel|retry|list|completion|help) cmd="${COMP_WORDS[i]}"; break ;;
        esac
    done

    case "$prev" in
        --type) COMPREPLY=($(compgen -W "sip voicemail vm web" -- "$cur")); return ;;
        --priority) COMPREPLY=($(compgen -W "high default low" -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W "json csv" -- "$cur")); return ;;
        --users-file|--out) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --redis-url|--service-provider|--group|--user|--job-id|--result-ttl|--at|--in|--callback-url|--requested-by|--timeout|--limit) return ;;
    esac

    case "$cmd" in
        ""|submit) flags="--service-provider --group --type --user --users-file --all-users --job-id --redis-url --result-ttl --priority --at --in --callback-url --requested-by --rebuild-devices --reset-devices --dry-run --wait --timeout --format --out --help" ;;
        status) flags="--json --watch --redis-url --help" ;;
        results) flags="--format --out --delete --redis-url --help" ;;
        cancel) flags="--requested-by --redis-url --help" ;;
        retry) flags="--job-id --redis-url --result-ttl --priority --at --in --callback-url --requested-by --wait --timeout --format --out --help" ;;
        list) flags="--limit --json --quiet --redis-url --help" ;;
        completion) COMPREPLY=($(compgen -W "bash zsh fish" -- "$cur")); return ;;
        help) COMPREPLY=($(compgen -W "submit status results cancel retry list completion" -- "$cur")); return ;;
    esac

    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [[ -z "$cmd" ]]; then
        COMPREPLY=($(compgen -W "submit status results cancel retry list completion help" -- "$cur"))
    elif [[ "$cmd" == status || "$cmd" == results || "$cmd" == cancel || "$cmd" == retry ]]; then
        COMPREPLY=($(compgen -W "$(enqueue list --quiet 2>/dev/null)" -- "$cur"))
    fi
}
complete -F _enqueue enqueue
`

const zshCompletion = `#compdef enqueue
# zsh completion for enqueue. Load it after compinit with: source <(enqueue completion zsh)

_enqueue_jobs() {
    local -a jobs
    jobs=(${(f)"$(enqueue list --quiet 2>/dev/null)"})
    _describe 'job' jobs
}

_enqueue() {
    local -a commands common submit_flags
    commands=(
        'submit:submit a reset job (the default command)'
        'status:show the state and progress of a job'
        'results:print the new values and errors of a job'
        'cancel:cancel a job'
        'retry:submit a new job for the users of a job that were not applied'
        'list:list recent jobs'
        'completion:print a shell completion script'
    )
    common=('--redis-url[Redis URL]:url:' '--help[show the help]')
    submit_flags=(
        '--service-provider[service provider ID]:id:'
        '--group[group ID]:id:'
        '--type[credential to reset]:type:(sip voicemail vm web)'
        '*--user[user ID to reset]:user:'
        '--users-file[file with one user ID per line]:file:_files'
        '--all-users[reset every user of the group]'
        '--job-id[job ID]:id:'
        '--result-ttl[how long the results are kept]:duration:'
        '--priority[queue priority]:priority:(high default low)'
        '--at[start time, RFC 3339]:time:'
        '--in[start after this delay]:duration:'
        '--callback-url[URL that receives the job summary]:url:'
        '--requested-by[who asks for the reset]:name:'
        '--rebuild-devices[SIP only: rebuild phone configuration]'
        '--dry-run[check the users without changing anything]'
        '--reset-devices[SIP only: rebuild and re-sync phones]'
        '--wait[wait, then print the results]'
        '--timeout[stop waiting after this duration]:duration:'
        '--format[output format]:format:(json csv)'
        '--out[output file]:file:_files'
    )

    if (( CURRENT == 2 )) && [[ $words[2] != -* ]]; then
        _describe 'command' commands
        return
    fi
    case $words[2] in
        status|results|cancel|retry|list|completion|submit)
            local command=$words[2]
            shift words
            (( CURRENT-- ))
            case $command in
                status) _arguments $common '--json[print JSON]' '--watch[redraw until the job finishes]' '1:job:_enqueue_jobs' ;;
                results) _arguments $common '--format[output format]:format:(json csv)' '--out[output file]:file:_files' '--delete[delete the record afterwards]' '1:job:_enqueue_jobs' ;;
                cancel) _arguments $common '--requested-by[who cancels]:name:' '1:job:_enqueue_jobs' ;;
                retry) _arguments $common '--job-id[ID of the new job]:id:' '--result-ttl[how long the results are kept]:duration:' \
                    '--priority[queue priority]:priority:(high default low)' '--at[start time, RFC 3339]:time:' \
                    '--in[start after this delay]:duration:' '--callback-url[URL that receives the job summary]:url:' \
                    '--requested-by[who asks for the retry]:name:' '--wait[wait, then print the results]' \
                    '--timeout[stop waiting after this duration]:duration:' '--format[output format]:format:(json csv)' \
                    '--out[output file]:file:_files' '1:job:_enqueue_jobs' ;;
                list) _arguments $common '--limit[how many jobs]:number:' '--json[print JSON]' '--quiet[print job IDs only]' ;;
                completion) _arguments '1:shell:(bash zsh fish)' ;;
                submit) _arguments $common $submit_flags ;;
            esac
            ;;
        *) _arguments $common $submit_flags ;;
    esac
}

compdef _enqueue enqueue
`

const fishCompletion = `# fish completion for enqueue. Load it with: enqueue completion fish | source
set -l commands submit status results cancel retry list completion
complete -c enqueue -f

complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a submit -d 'submit a reset job (the default command)'
complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a status -d 'show the state and progress of a job'
complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a results -d 'print the new values and errors of a job'
complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a cancel -d 'cancel a job'
complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a retry -d 'submit a new job for the users of a job that were not applied'
complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a list -d 'list recent jobs'
complete -c enqueue -n "not __fish_seen_subcommand_from $commands" -a completion -d 'print a shell completion script'

complete -c enqueue -l redis-url -x -d 'Redis URL'
complete -c enqueue -l help -d 'show the help'

set -l submitting "not __fish_seen_subcommand_from status results cancel retry list completion"
complete -c enqueue -n $submitting -l service-provider -x -d 'service provider ID'
complete -c enqueue -n $submitting -l group -x -d 'group ID'
complete -c enqueue -n $submitting -l type -x -a 'sip voicemail vm web' -d 'credential to reset'
complete -c enqueue -n $submitting -l user -x -d 'user ID to reset'
complete -c enqueue -n $submitting -l users-file -r -F -d 'file with one user ID per line'
complete -c enqueue -n $submitting -l all-users -d 'reset every user of the group'
complete -c enqueue -n $submitting -l job-id -x -d 'job ID'
complete -c enqueue -n $submitting -l result-ttl -x -d 'how long the results are kept'
complete -c enqueue -n $submitting -l priority -x -a 'high default low' -d 'queue priority'
complete -c enqueue -n $submitting -l at -x -d 'start time, RFC 3339'
complete -c enqueue -n $submitting -l in -x -d 'start after this delay'
complete -c enqueue -n $submitting -l callback-url -x -d 'URL that receives the job summary'
complete -c enqueue -n $submitting -l requested-by -x -d 'who asks for the reset'
complete -c enqueue -n $submitting -l rebuild-devices -d 'SIP only: rebuild phone configuration'
complete -c enqueue -n $submitting -l dry-run -d 'check the users without changing anything'
complete -c enqueue -n $submitting -l reset-devices -d 'SIP only: rebuild and re-sync phones'
complete -c enqueue -n $submitting -l wait -d 'wait, then print the results'
complete -c enqueue -n $submitting -l timeout -x -d 'stop waiting after this duration'
complete -c enqueue -n "$submitting; or __fish_seen_subcommand_from results retry" -l format -x -a 'json csv' -d 'output format'
complete -c enqueue -n "$submitting; or __fish_seen_subcommand_from results retry" -l out -r -F -d 'output file'

set -l retrying "__fish_seen_subcommand_from retry"
complete -c enqueue -n $retrying -l job-id -x -d 'ID of the new job'
complete -c enqueue -n $retrying -l result-ttl -x -d 'how long the results are kept'
complete -c enqueue -n $retrying -l priority -x -a 'high default low' -d 'queue priority'
complete -c enqueue -n $retrying -l at -x -d 'start time, RFC 3339'
complete -c enqueue -n $retrying -l in -x -d 'start after this delay'
complete -c enqueue -n $retrying -l callback-url -x -d 'URL that receives the job summary'
complete -c enqueue -n $retrying -l requested-by -x -d 'who asks for the retry'
complete -c enqueue -n $retrying -l wait -d 'wait, then print the results'
complete -c enqueue -n $retrying -l timeout -x -d 'stop waiting after this duration'

complete -c enqueue -n "__fish_seen_subcommand_from status results cancel retry" -a '(enqueue list --quiet 2>/dev/null)' -d 'job'
complete -c enqueue -n "__fish_seen_subcommand_from status list" -l json -d 'print JSON'
complete -c enqueue -n "__fish_seen_subcommand_from status" -l watch -d 'redraw until the job finishes'
complete -c enqueue -n "__fish_seen_subcommand_from results" -l delete -d 'delete the record afterwards'
complete -c enqueue -n "__fish_seen_subcommand_from cancel" -l requested-by -x -d 'who cancels'
complete -c enqueue -n "__fish_seen_subcommand_from list" -l limit -x -d 'how many jobs'
complete -c enqueue -n "__fish_seen_subcommand_from list" -l quiet -d 'print job IDs only'
complete -c enqueue -n "__fish_seen_subcommand_from completion" -a 'bash zsh fish'
`
