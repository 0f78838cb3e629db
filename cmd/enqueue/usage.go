package main

const mainUsage = `Usage: enqueue [submit] --service-provider SP --group G --type TYPE (--user ID... | --users-file FILE | --all-users) [options]
       enqueue status JOB [--json] [--watch]
       enqueue results JOB [--format json|csv] [--out FILE] [--delete]
       enqueue cancel JOB
       enqueue retry JOB [--wait] [options]
       enqueue list [--limit N] [--json]
       enqueue completion bash|zsh|fish

enqueue submits bulk credential resets (SIP password, voicemail passcode, web password)
of BroadWorks users to the reset workers through Redis, and follows, collects and
cancels them. It never talks to Odin itself.

Commands:
  submit      validate and enqueue a job (the default when the first argument is a flag)
  status      show a job's state, counts, rate and time left
  results     print a job's new values and errors as JSON or CSV
  cancel      cancel a job: users not reset yet are left alone
  retry       submit a new job for the users of a finished job that were not applied
  list        list recent jobs
  completion  print a completion script for bash, zsh or fish

Run "enqueue COMMAND --help" for a command's options and examples.

Redis comes from --redis-url or REDIS_URL (redis://[user:password@]host:port/db, or
rediss:// for TLS), or REDIS_SENTINEL_ADDRS with REDIS_SENTINEL_MASTER and
REDIS_SENTINEL_PASSWORD(_FILE), or REDIS_CLUSTER_ADDRS; REDIS_USERNAME,
REDIS_PASSWORD(_FILE), REDIS_DB and REDIS_TLS complete them. Reading results needs the
key the workers encrypt with: RESULTS_KEY or RESULTS_KEY_FILE, and RESULTS_KEY_PREVIOUS
during a key rotation.

Exit codes:
  0  success; for submit --wait, results and status of a finished job: every user applied
  1  some users failed or were not reset (the output shows which)
  2  invalid input, usage or configuration (a missing or wrong results key included)
  3  Redis or other infrastructure error
  4  --wait stopped before the job finished; the job continues
`

const submitUsage = `Usage: enqueue [submit] --service-provider SP --group G --type sip|voicemail|vm|web
           (--user ID... | --users-file FILE | --all-users) [options]

Submits one job that resets the credential of the given users. Without --wait it prints
the job ID on standard output and returns at once; with --wait it shows progress on
standard error and prints the results (JSON rows {"userId", "newPassword"} or
"newPasscode", or "error") on standard output when the job finishes.

A users file has one user ID per line; blank lines and lines starting with # are
skipped, CRLF line endings and a UTF-8 byte order mark are accepted, and duplicates are
reset once. A first line that names a column, such as userId, is rejected. Submitting
the same --job-id again enqueues nothing new; with other users or options it is rejected.
`

const submitExamples = `
Examples:
  # Reset the SIP passwords of two users; prints the job ID.
  enqueue --service-provider sp1 --group grp1 --type sip --user alice@example.com --user bob@example.com

  # Reset the voicemail passcodes of the users in a file, wait, and save the results.
  enqueue --service-provider sp1 --group grp1 --type vm --users-file users.txt --wait --out results.json

  # Reset every web password of a group tonight at 23:00 UTC, at low priority.
  enqueue --service-provider sp1 --group grp1 --type web --all-users --at 2026-12-04T23:00:00Z --priority low

  # Read users from standard input and make the phones re-sync after the SIP reset.
  grep -v inactive users.txt | enqueue --service-provider sp1 --group grp1 --type sip --users-file - --reset-devices

  # Check a list the day before, changing nothing: every user gets "ok" or the reason.
  enqueue --service-provider sp1 --group grp1 --type sip --users-file users.txt --dry-run --wait
`

const statusUsage = `Usage: enqueue status JOB [--json] [--watch]

Shows a job's state, how many users are applied, failed and pending ("not reset" once
the job is cancelled), the rate since the start, the estimated time left, why the job
waits (for example a failed Odin login), how many pending users wait in asynq's retry set
and when the next one runs, and its timestamps. The exit code is 1 for a finished job in
which not every user was applied.
`

const statusExamples = `
Examples:
  enqueue status reset-20261204-2301-1a2b3c4d
  enqueue status reset-20261204-2301-1a2b3c4d --watch
  enqueue status reset-20261204-2301-1a2b3c4d --json | jq .pending
`

const resultsUsage = `Usage: enqueue results JOB [--format json|csv] [--out FILE] [--delete]

Prints a job's rows in submission order: the new value of each applied user, the error
of each failed one. Reading encrypted values needs the workers' key in RESULTS_KEY or
RESULTS_KEY_FILE. --delete removes the record once the rows are written, so the values
exist only in the output. The exit code is 1 when not every user was applied.
`

const resultsExamples = `
Examples:
  enqueue results reset-20261204-2301-1a2b3c4d > results.json
  RESULTS_KEY_FILE=/run/secrets/results-key enqueue results reset-20261204-2301-1a2b3c4d --format csv --out results.csv --delete
`

const cancelUsage = `Usage: enqueue cancel JOB [--requested-by NAME]

Cancels a queued or running job: users already applied stay applied, the others are not
reset, and their queued tasks are removed. A reset already in flight may still finish.
Prints the counts after the cancel.
`

const cancelExamples = `
Examples:
  enqueue cancel reset-20261204-2301-1a2b3c4d
`

const retryUsage = `Usage: enqueue retry JOB [--job-id ID] [--priority P] [--wait] [options]

Submits a new job for the users of the finished job JOB that were not applied: the
failed ones and, in a cancelled job, those not reset. The new job takes JOB's service
provider, group, credential type, device step and dry-run setting, and its priority
unless --priority is given. Every user gets a new value, including a user whose failed
row in JOB says its value may be set: the new job's results then hold the value Odin
keeps. Users that failed for a lasting reason, such as a service not assigned, fail
again with the same reason. JOB must have no task left on a worker, so a reset still
in flight cannot set its value after the new one. A job is retried once; to go on,
retry the retry. Without --wait it prints the new job's ID.
`

const retryExamples = `
Examples:
  # After an Odin outage exhausted the retries of some users, reset them again and wait.
  enqueue retry reset-20261204-2301-1a2b3c4d --wait --out retried.json

  # Retry the users of a cancelled job tomorrow night, at low priority.
  enqueue retry reset-20261204-2301-1a2b3c4d --at 2026-12-05T23:00:00Z --priority low
`

const listUsage = `Usage: enqueue list [--limit N] [--json] [--quiet]

Lists recent jobs, newest first, with their state and counts.
`

const listExamples = `
Examples:
  enqueue list
  enqueue list --limit 100 --json
`

const completionUsage = `Usage: enqueue completion bash|zsh|fish

Prints a shell completion script for commands, options and job IDs.
`

const completionExamples = `
Examples:
  source <(enqueue completion bash)
  source <(enqueue completion zsh)     # after compinit
  enqueue completion fish | source
`
