# SPDX-License-Identifier: Apache-2.0
#
# softhsm.sh -- the one SoftHSM set-up of the shell scripts (sourced by tests/integration/lib.sh
# and the tests, tools/bench, tools/quickstart and ceremony/demo.sh): each SoftHSM installation
# is a directory with its own softhsm2.conf and its token files under DIR/tokens (file backend,
# errors only), so nothing touches /etc, /var or $HOME. Point SOFTHSM2_CONF at DIR/softhsm2.conf.

# softhsm_conf DIR [UMASK]: make DIR/tokens and write DIR/softhsm2.conf (UMASK: the token files'
# objectstore.umask, e.g. 0077; none: SoftHSM's default)
softhsm_conf() {
    mkdir -p "$1/tokens"
    {
        printf 'directories.tokendir = %s/tokens\nobjectstore.backend = file\n' "$1"
        if [ -n "${2:-}" ]; then
            printf 'objectstore.umask = %s\n' "$2"
        fi
        printf 'log.level = ERROR\n'
    } > "$1/softhsm2.conf"
}

# softhsm_token CONF LABEL SO-PIN PIN: initialise a free token LABEL in the installation of CONF
softhsm_token() {
    SOFTHSM2_CONF=$1 softhsm2-util --init-token --free --label "$2" --so-pin "$3" --pin "$4" \
        > /dev/null
}

# softhsm_has_token CONF LABEL: true when the installation of CONF has a token LABEL
softhsm_has_token() {
    SOFTHSM2_CONF=$1 softhsm2-util --show-slots 2> /dev/null | grep -q "Label: *$2 *$"
}
