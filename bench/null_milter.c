/*
 * A libmilter filter in C that reads every header and body chunk and changes
 * nothing: with --c-floor, bench/milter_throughput.py runs it beside the
 * Python floor (bench/null_milter.py) to show what libmilter itself costs,
 * without Python. Built by the benchmark with: cc -O2 null_milter.c -lmilter
 *
 *     null_milter unix:/path/to/socket   (or inet:PORT@127.0.0.1)
 */
#include <libmilter/mfapi.h>
#include <stddef.h>

static sfsistat on_header(SMFICTX *ctx, char *name, char *value) {
    (void)ctx; (void)name; (void)value;
    return SMFIS_CONTINUE;
}

static sfsistat on_body(SMFICTX *ctx, unsigned char *chunk, size_t length) {
    (void)ctx; (void)chunk; (void)length;
    return SMFIS_CONTINUE;
}

static sfsistat on_eom(SMFICTX *ctx) {
    (void)ctx;
    return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
    "null", SMFI_VERSION, 0, NULL, NULL, NULL, NULL, on_header, NULL, on_body, on_eom,
    NULL, NULL, NULL, NULL, NULL,
};

int main(int argc, char **argv) {
    if (argc != 2 || smfi_setconn(argv[1]) == MI_FAILURE || smfi_register(filter) == MI_FAILURE)
        return 1;
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
