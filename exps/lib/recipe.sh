# shellcheck shell=bash
# Shared by every shell recipe (exps/*.sh, Neighbor2Neighbor/*.sh, toy_mnist/*.sh): --help prints the recipe's
# header comment and exits, --dry-run prints each command (shell-quoted) instead of running it, any other option
# exits 2. Commands are argument arrays, never strings passed to eval, so paths may hold spaces.

DRY_RUN="${DRY_RUN:-0}"
RECIPE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"

require_installed() {  # the scripts import the installed project: it must be this checkout (pip install -e .)
    (cd / && "${PYTHON:-python}" "$RECIPE_REPO/utils/installed_checkout.py" "$RECIPE_REPO") || exit 2
    export RECIPE_INSTALL_CHECKED="$RECIPE_REPO"
}

load_paper_facts() {  # the PAPER_* variables of utils/paper_facts.py (the paper's settings, spelled once there)
    local facts
    facts="$(python -m utils.paper_facts shell)" \
        || { echo "cannot read the paper's settings (utils/paper_facts.py)" >&2; exit 2; }
    eval "$facts"
}

recipe_help() {  # recipe_help SCRIPT: the header comment, without the #! line
    awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$1"
}

run_cmd() {  # run_cmd COMMAND...: print it, then run it unless --dry-run
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$DRY_RUN" = 0 ]; then
        [ "${RECIPE_INSTALL_CHECKED:-}" = "$RECIPE_REPO" ] || require_installed
        "$@"
    fi
}

parse_recipe_args() {  # parse_recipe_args SCRIPT MAX ARG...: --dry-run, -h/--help; at most MAX positional
    local script="$1" max="$2" arg   # arguments, in RECIPE_ARGS (one more is refused, never silently ignored)
    shift 2
    RECIPE_ARGS=()
    for arg in "$@"; do
        case "$arg" in
            --dry-run) DRY_RUN=1 ;;
            -h|--help) recipe_help "$script"; exit 0 ;;
            -*) echo "$(basename "$script"): unknown option $arg (expected --dry-run or --help)" >&2; exit 2 ;;
            *) RECIPE_ARGS+=("$arg") ;;
        esac
    done
    if [ "${#RECIPE_ARGS[@]}" -gt "$max" ]; then
        if [ "$max" -eq 0 ]; then
            echo "$(basename "$script"): unexpected argument ${RECIPE_ARGS[0]} (expected --dry-run or --help)" >&2
        else
            echo "$(basename "$script"): unexpected argument ${RECIPE_ARGS[$max]}: it takes one NOISE setting; run" \
                 "it once per setting, each with its own OUT" >&2
        fi
        exit 2
    fi
}

take_flag() {  # take_flag FLAG SCRIPT INPUTS ARG...: FLAG_GIVEN=1 when FLAG is among ARG..., the other options in
    local flag="$1" script="$2" inputs="$3" arg   # FLAG_OTHERS (for parse_recipe_args); a positional argument
    shift 3                                        # exits 2, saying that INPUTS (e.g. "DATA=...") name the inputs
    FLAG_GIVEN=0
    FLAG_OTHERS=()
    for arg in "$@"; do
        case "$arg" in
            "$flag") FLAG_GIVEN=1 ;;
            -*) FLAG_OTHERS+=("$arg") ;;
            *) echo "$script: unexpected argument $arg (expected $flag, --dry-run or --help; $inputs)" >&2; exit 2 ;;
        esac
    done
}
