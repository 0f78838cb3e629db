#!/usr/bin/env bash
# Writes the compose secrets that are missing in deploy/secrets/ with random values:
# odin_password, results_key (a base64 AES-256 key) and monitoring_password. The random
# odin_password suits the demo simulator, which reads the same file; replace it for a
# real Odin. Existing files are kept, so running the script again never replaces a
# results key that encrypts stored values.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=deploy/secrets
mkdir -p "$DIR"
# Compose mounts the files with their host mode and the containers run as user 10001, so
# the files must be readable by others. The folder's mode 0700 keeps other host users out.
chmod 0700 "$DIR"

# random_base64 prints N random bytes in base64.
random_base64() {
	head -c "$1" /dev/urandom | base64 | tr -d '\n'
}

write_secret() {
	local name="$1" value="$2"
	local path="$DIR/$name"
	if [[ -s "$path" ]]; then
		echo "compose-secrets: keeping $path"
		return
	fi
	(umask 022 && printf '%s\n' "$value" >"$path")
	chmod 0644 "$path"
	echo "compose-secrets: wrote $path"
}

write_secret odin_password "$(random_base64 18 | tr '/+' '_-')"
write_secret results_key "$(random_base64 32)"
write_secret monitoring_password "$(random_base64 18 | tr '/+' '_-')"
echo "compose-secrets: the dashboard login is operator (MONITORING_USER in deploy/worker.env) with the password in $DIR/monitoring_password"
