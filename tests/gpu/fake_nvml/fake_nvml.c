/*
 * A fake libnvidia-ml.so.1 for tests: the NVML entry points the aispend GPU exporter
 * calls through pynvml, answering from a JSON state file named by $FAKE_NVML_STATE.
 *
 * The state is re-read at nvmlInitWithFlags and at every nvmlDeviceGetCount_v2 (the
 * first call of each scrape), so a test changes the GPUs between scrapes by rewriting
 * the file. Shape:
 *   {"init_error": 0, "errors": {"nvmlDeviceGetCount_v2": 9},
 *    "devices": [{"name": "...", "uuid": "GPU-...", "utilization_gpu": 87,
 *                 "utilization_memory": 40, "memory_total": 85899345920,
 *                 "memory_used": 1073741824, "power_mw": 512300, "energy_mj": 123456789,
 *                 "temperature": 61, "mig_mode": 1, "max_mig_devices": 7,
 *                 "mig_devices": [{"gpu_instance_id": 1, "memory_total": 1, "memory_used": 1}],
 *                 "processes": [{"pid": 4242, "used_memory": 1, "name": "python3"}],
 *                 "errors": {"nvmlDeviceGetPowerUsage": 3}, "lost": false}]}
 * "errors" maps a C symbol name to the nvmlReturn_t it answers on that device (at the
 * top level: for nvmlDeviceGetCount_v2, the one call not on a device); "lost" makes
 * every call on the device answer NVML_ERROR_GPU_IS_LOST (15). A process's
 * "used_memory": null answers NVML_VALUE_NOT_AVAILABLE (the driver cannot account it).
 *
 * Signatures and struct layouts follow nvml.h (nvmlMemory_t: total, free, used as
 * unsigned long long; nvmlUtilization_t: gpu, memory as unsigned int; nvmlProcessInfo_t
 * (v2/v3): pid, usedGpuMemory, gpuInstanceId, computeInstanceId), the same layouts
 * pynvml declares with ctypes.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;

#define NVML_SUCCESS 0
#define NVML_ERROR_UNINITIALIZED 1
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_SUPPORTED 3
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_INSUFFICIENT_SIZE 7
#define NVML_ERROR_GPU_IS_LOST 15
#define NVML_ERROR_UNKNOWN 999
#define NVML_VALUE_NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL /* an unknown unsigned long long */

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
    unsigned int pid;
    unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId;
    unsigned int computeInstanceId;
} nvmlProcessInfo_t;

/* ------------------------------------------------------------ a minimal JSON reader */
enum jtype { J_NULL, J_BOOL, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct jv {
    enum jtype t;
    double num;
    char *str;
    struct jv **items;
    char **keys;
    int n;
} jv;

static const char *jp;

static void skip_ws(void) { while (*jp && isspace((unsigned char)*jp)) jp++; }

static jv *jnew(enum jtype t) { jv *v = calloc(1, sizeof(jv)); v->t = t; return v; }

static char *parse_string_raw(void) {
    size_t cap = 16, len = 0;
    char *out = malloc(cap);
    jp++; /* opening quote */
    while (*jp && *jp != '"') {
        char c = *jp++;
        if (c == '\\' && *jp) {
            char e = *jp++;
            c = e == 'n' ? '\n' : e == 't' ? '\t' : e;
            if (e == 'u') { jp += 4; c = '?'; }
        }
        if (len + 2 > cap) out = realloc(out, cap *= 2);
        out[len++] = c;
    }
    if (*jp == '"') jp++;
    out[len] = 0;
    return out;
}

static jv *parse_value(void);

static void push(jv *v, char *key, jv *item) {
    v->items = realloc(v->items, sizeof(jv *) * (v->n + 1));
    v->keys = realloc(v->keys, sizeof(char *) * (v->n + 1));
    v->items[v->n] = item;
    v->keys[v->n] = key;
    v->n++;
}

static jv *parse_value(void) {
    skip_ws();
    if (*jp == '{' || *jp == '[') {
        int obj = *jp == '{';
        jv *v = jnew(obj ? J_OBJ : J_ARR);
        jp++;
        skip_ws();
        while (*jp && *jp != (obj ? '}' : ']')) {
            char *key = NULL;
            if (obj) {
                skip_ws();
                key = parse_string_raw();
                skip_ws();
                if (*jp == ':') jp++;
            }
            push(v, key, parse_value());
            skip_ws();
            if (*jp == ',') jp++;
            skip_ws();
        }
        if (*jp) jp++;
        return v;
    }
    if (*jp == '"') { jv *v = jnew(J_STR); v->str = parse_string_raw(); return v; }
    if (!strncmp(jp, "true", 4)) { jv *v = jnew(J_BOOL); v->num = 1; jp += 4; return v; }
    if (!strncmp(jp, "false", 5)) { jv *v = jnew(J_BOOL); jp += 5; return v; }
    if (!strncmp(jp, "null", 4)) { jp += 4; return jnew(J_NULL); }
    {
        char *end;
        jv *v = jnew(J_NUM);
        v->num = strtod(jp, &end);
        jp = end == jp ? jp + 1 : end;
        return v;
    }
}

static void jfree(jv *v) {
    if (!v) return;
    for (int i = 0; i < v->n; i++) { jfree(v->items[i]); free(v->keys[i]); }
    free(v->items); free(v->keys); free(v->str); free(v);
}

static jv *jget(jv *v, const char *key) {
    if (!v || v->t != J_OBJ) return NULL;
    for (int i = 0; i < v->n; i++) if (!strcmp(v->keys[i], key)) return v->items[i];
    return NULL;
}
static jv *jidx(jv *v, int i) { return v && v->t == J_ARR && i >= 0 && i < v->n ? v->items[i] : NULL; }
static double jnum(jv *v, const char *key, double dflt) { jv *x = jget(v, key); return x && (x->t == J_NUM || x->t == J_BOOL) ? x->num : dflt; }
static const char *jstr(jv *v, const char *key) { jv *x = jget(v, key); return x && x->t == J_STR ? x->str : ""; }
static int jlen(jv *v) { return v && v->t == J_ARR ? v->n : 0; }

/* ------------------------------------------------------------ state */
static jv *state;
static int initialised;

static int load_state(void) {
    const char *path = getenv("FAKE_NVML_STATE");
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) return 0;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc(size + 1);
    size_t got = fread(text, 1, size, f);
    fclose(f);
    text[got] = 0;
    jp = text;
    jv *parsed = parse_value();
    free(text);
    jfree(state);
    state = parsed;
    return 1;
}

static jv *devices(void) { return jget(state, "devices"); }

/* Handle encoding: GPU i -> 0x1000*(i+1); its MIG slot s -> 0x1000*(i+1) + s + 1. */
static jv *resolve(nvmlDevice_t h, jv **gpu_out, int *slot_out) {
    uintptr_t v = (uintptr_t)h;
    int i = (int)(v / 0x1000) - 1, slot = (int)(v % 0x1000) - 1;
    jv *gpu = jidx(devices(), i);
    if (gpu_out) *gpu_out = gpu;
    if (slot_out) *slot_out = slot;
    if (!gpu) return NULL;
    if (slot < 0) return gpu;
    jv *migs = jget(gpu, "mig_devices");
    return jidx(migs, slot);
}

/* 0, or the error this device answers for `fn`. */
static nvmlReturn_t fault(nvmlDevice_t h, const char *fn, jv **dev_out) {
    jv *gpu;
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    jv *dev = resolve(h, &gpu, NULL);
    if (!dev) return NVML_ERROR_INVALID_ARGUMENT;
    if (jnum(gpu, "lost", 0)) return NVML_ERROR_GPU_IS_LOST;
    int code = (int)jnum(jget(dev, "errors"), fn, 0);
    if (dev_out) *dev_out = dev;
    return code;
}

static nvmlReturn_t copy_str(const char *s, char *out, unsigned int len) {
    if (!out || strlen(s) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, s);
    return NVML_SUCCESS;
}

/* ------------------------------------------------------------ the NVML API */
nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    if (!load_state()) return NVML_ERROR_UNKNOWN;
    int err = (int)jnum(state, "init_error", 0);
    if (err) return err;
    initialised = 1;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlShutdown(void) { initialised = 0; return NVML_SUCCESS; }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    return copy_str("550.54.15-fake", version, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    load_state();
    int err = (int)jnum(jget(state, "errors"), "nvmlDeviceGetCount_v2", 0);
    if (err) return err;
    *count = (unsigned int)jlen(devices());
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if ((int)index >= jlen(devices())) return NVML_ERROR_INVALID_ARGUMENT;
    *device = (nvmlDevice_t)(uintptr_t)(0x1000 * (index + 1));
    return NVML_SUCCESS;
}

#define FAULT(fn) jv *dev = NULL; nvmlReturn_t rc = fault(device, fn, &dev); if (rc) return rc

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    FAULT("nvmlDeviceGetName");
    return copy_str(jstr(dev, "name"), name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    FAULT("nvmlDeviceGetUUID");
    return copy_str(jstr(dev, "uuid"), uuid, length);
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *util) {
    FAULT("nvmlDeviceGetUtilizationRates");
    util->gpu = (unsigned int)jnum(dev, "utilization_gpu", 0);
    util->memory = (unsigned int)jnum(dev, "utilization_memory", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    FAULT("nvmlDeviceGetMemoryInfo");
    memory->total = (unsigned long long)jnum(dev, "memory_total", 0);
    memory->used = (unsigned long long)jnum(dev, "memory_used", 0);
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power) {
    FAULT("nvmlDeviceGetPowerUsage");
    *power = (unsigned int)jnum(dev, "power_mw", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEnergyConsumption(nvmlDevice_t device, unsigned long long *energy) {
    FAULT("nvmlDeviceGetTotalEnergyConsumption");
    *energy = (unsigned long long)jnum(dev, "energy_mj", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temp) {
    FAULT("nvmlDeviceGetTemperature");
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
    *temp = (unsigned int)jnum(dev, "temperature", 0);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t device, unsigned int *count,
                                                      nvmlProcessInfo_t *infos) {
    FAULT("nvmlDeviceGetComputeRunningProcesses_v3");
    jv *procs = jget(dev, "processes");
    unsigned int n = (unsigned int)jlen(procs);
    if (n == 0) { *count = 0; return NVML_SUCCESS; }
    if (!infos || *count < n) { *count = n; return NVML_ERROR_INSUFFICIENT_SIZE; }
    for (unsigned int i = 0; i < n; i++) {
        jv *p = jidx(procs, (int)i);
        infos[i].pid = (unsigned int)jnum(p, "pid", 0);
        jv *used = jget(p, "used_memory");
        infos[i].usedGpuMemory = used && used->t == J_NULL ? NVML_VALUE_NOT_AVAILABLE
                                                           : (unsigned long long)jnum(p, "used_memory", 0);
        infos[i].gpuInstanceId = 0xFFFFFFFF;
        infos[i].computeInstanceId = 0xFFFFFFFF;
    }
    *count = n;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int length) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    for (int i = 0; i < jlen(devices()); i++) {
        jv *procs = jget(jidx(devices(), i), "processes");
        for (int j = 0; j < jlen(procs); j++) {
            jv *p = jidx(procs, j);
            if ((unsigned int)jnum(p, "pid", 0) == pid) return copy_str(jstr(p, "name"), name, length);
        }
    }
    return NVML_ERROR_NOT_FOUND;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t device, unsigned int *current, unsigned int *pending) {
    FAULT("nvmlDeviceGetMigMode");
    jv *mode = jget(dev, "mig_mode");
    if (!mode) return NVML_ERROR_NOT_SUPPORTED; /* a GPU without MIG */
    *current = *pending = (unsigned int)mode->num;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t device, unsigned int *count) {
    FAULT("nvmlDeviceGetMaxMigDeviceCount");
    *count = (unsigned int)jnum(dev, "max_mig_devices", 7);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t device, unsigned int index,
                                                 nvmlDevice_t *mig) {
    FAULT("nvmlDeviceGetMigDeviceHandleByIndex");
    if ((int)index >= jlen(jget(dev, "mig_devices"))) return NVML_ERROR_NOT_FOUND;
    *mig = (nvmlDevice_t)((uintptr_t)device + index + 1);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t device, unsigned int *id) {
    int slot;
    resolve(device, NULL, &slot);
    if (slot < 0) return NVML_ERROR_NOT_SUPPORTED; /* only MIG handles have one */
    FAULT("nvmlDeviceGetGpuInstanceId");
    *id = (unsigned int)jnum(dev, "gpu_instance_id", 0);
    return NVML_SUCCESS;
}
