/*
 * t/fuzz_standalone.c - runs a libFuzzer target without libFuzzer: each
 * argument is an input file or a directory of them (a corpus), replayed
 * once through LLVMFuzzerTestOneInput.  Without arguments it runs the
 * target's own fuzz_standalone_default(), when it has one (seeded random
 * inputs).  Built with -DFUZZ_STANDALONE and gcc's ASan+UBSan, so that
 * make unit replays every committed corpus on machines without clang.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int fuzz_standalone_default(void) __attribute__((weak));

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *buf;
    long size;
    int ok;

    if (!f) {
        perror(path);
        return 0;
    }
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* Exactly the input's size, so that ASan sees a read past its end. */
    buf = malloc(size > 0 ? (size_t)size : 1);
    ok = buf && size >= 0
         && (size == 0 || fread(buf, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    if (!ok) {
        perror(path);
        free(buf);
        return 0;
    }
    LLVMFuzzerTestOneInput(buf, (size_t)size);
    free(buf);
    return 1;
}

/* Replays path, or every regular file in it; returns the count, -1 on
 * an error. */
static long replay(const char *path)
{
    struct stat st;
    struct dirent *e;
    DIR *dir;
    long n = 0;

    if (stat(path, &st) != 0) {
        perror(path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        return replay_file(path) ? 1 : -1;
    }
    if (!(dir = opendir(path))) {
        perror(path);
        return -1;
    }
    while ((e = readdir(dir)) != NULL) {
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        char *file = malloc(len);

        snprintf(file, len, "%s/%s", path, e->d_name);
        if (stat(file, &st) == 0 && S_ISREG(st.st_mode)) {
            n = replay_file(file) && n >= 0 ? n + 1 : -1;
        }
        free(file);
    }
    closedir(dir);
    return n;
}

int main(int argc, char **argv)
{
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1
                                             : argv[0];
    long total = 0;
    int i;

    if (argc == 1) {
        if (!fuzz_standalone_default) {
            fprintf(stderr, "usage: %s file-or-corpus-dir...\n", name);
            return 2;
        }
        return fuzz_standalone_default();
    }
    for (i = 1; i < argc; i++) {
        long n = replay(argv[i]);

        if (n < 0) {
            return 1;
        }
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "%s: no input in %s\n", name, argv[1]);
        return 1;
    }
    printf("%s: %ld input(s) replayed\n", name, total);
    return 0;
}
