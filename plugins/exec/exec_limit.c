/*
 * exec_limit.c - max_processes: how many programs a location runs in the
 * whole server, across httpd's children.
 *
 * The count lives in an anonymous shared mapping made by the plugin's
 * init function, which runs in the parent at configuration time, so
 * every child forked afterwards shares it; each configuration load makes
 * its own (children of an older generation keep theirs while they end).
 *
 * A child that crashes cannot give its places back, so the count is kept
 * per child (its pid and its programs), under a robust process-shared
 * mutex (a child dying while it holds it does not block the others): a
 * child's places are reclaimed once its pid is gone.  The table is
 * summed only to decide a refusal, so a server under its limit pays one
 * lock and a short scan per handshake.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "exec.h"

/* Children that can hold programs at once (ServerLimit rarely comes
 * close; beyond it, a handshake is refused as if the limit were met). */
#define EXEC_LIMIT_CHILDREN 4096

typedef struct exec_child_count {
    pid_t pid;                 /* 0: free */
    unsigned int programs;
} exec_child_count;

typedef struct exec_limit_shm {
    pthread_mutex_t lock;      /* process-shared, robust */
    unsigned int used;         /* entries ever taken: the scan's end */
    exec_child_count child[EXEC_LIMIT_CHILDREN];
} exec_limit_shm;

/* Private to each process (a copy in each child after the fork). */
struct exec_limit {
    exec_limit_shm *shm;
    pid_t fresh;               /* this process's entry was reset */
};

exec_limit *exec_limit_create(void)
{
    pthread_mutexattr_t attr;
    exec_limit *limit = calloc(1, sizeof(*limit));
    exec_limit_shm *shm = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE,
                               MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int rc;

    if (!limit || shm == MAP_FAILED) {
        free(limit);
        if (shm != MAP_FAILED) {
            munmap(shm, sizeof(*shm));
        }
        return NULL;
    }
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    rc = pthread_mutex_init(&shm->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) {
        munmap(shm, sizeof(*shm));
        free(limit);
        return NULL;
    }
    limit->shm = shm;
    return limit;
}

void exec_limit_destroy(exec_limit *limit)
{
    if (limit) {
        munmap(limit->shm, sizeof(*limit->shm));
        free(limit);
    }
}

static exec_limit_shm *lock_limit(exec_limit *limit)
{
    /* A child died holding it: the table is consistent at every store
     * (each is one counter), so it is only marked usable again. */
    if (pthread_mutex_lock(&limit->shm->lock) == EOWNERDEAD) {
        pthread_mutex_consistent(&limit->shm->lock);
    }
    return limit->shm;
}

static int child_is_gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* With the lock held. */
static unsigned int count_programs(exec_limit_shm *limit, int reclaim)
{
    unsigned int i, total = 0;

    for (i = 0; i < limit->used; i++) {
        exec_child_count *c = &limit->child[i];

        if (c->pid && reclaim && c->pid != getpid() && child_is_gone(c->pid)) {
            c->pid = 0;
            c->programs = 0;
        }
        total += c->programs;
    }
    return total;
}

/* With the lock held: this child's entry, taken if need be. */
static exec_child_count *own_entry(exec_limit_shm *limit)
{
    pid_t me = getpid();
    unsigned int i;
    exec_child_count *free_entry = NULL;

    for (i = 0; i < limit->used; i++) {
        if (limit->child[i].pid == me) {
            return &limit->child[i];
        }
        if (!limit->child[i].pid && !free_entry) {
            free_entry = &limit->child[i];
        }
    }
    if (!free_entry && limit->used < EXEC_LIMIT_CHILDREN) {
        free_entry = &limit->child[limit->used++];
    }
    if (free_entry) {
        free_entry->pid = me;
        free_entry->programs = 0;
    }
    return free_entry;
}

/* A new process may have the pid of a child that died before its places
 * were reclaimed: its entry starts from nothing. */
static void forget_namesake(exec_limit *limit, exec_limit_shm *shm)
{
    exec_child_count *mine;

    if (limit->fresh == getpid()) {
        return;
    }
    mine = own_entry(shm);
    if (mine) {
        mine->programs = 0;
        limit->fresh = getpid();
    }
}

int exec_limit_take(exec_limit *limit, int max)
{
    exec_limit_shm *shm = lock_limit(limit);
    exec_child_count *mine;
    int taken = 0;

    forget_namesake(limit, shm);
    if (count_programs(shm, 0) < (unsigned int)max
        || count_programs(shm, 1) < (unsigned int)max) {
        mine = own_entry(shm);
        if (mine) {
            mine->programs++;
            taken = 1;
        }
    }
    pthread_mutex_unlock(&shm->lock);
    return taken;
}

void exec_limit_give(exec_limit *limit)
{
    exec_limit_shm *shm = lock_limit(limit);
    exec_child_count *mine = own_entry(shm);

    if (mine && mine->programs > 0) {
        mine->programs--;
    }
    pthread_mutex_unlock(&shm->lock);
}
