/* The walk of modelformat.forest.Forest.margin in C, for the batches of a few rows where the
 * NumPy walk's two dozen array calls cost more than the 1,200 comparisons they make; and, for a
 * request of a few plain numeric CSV rows, the parse of its body too (score_csv), where reading
 * 60 numbers through str.split and NumPy's cast cost twice the walk.
 *
 * Same trees and arithmetic as forest.py (its `nodes` array holds them tree by tree): float32
 * values and thresholds, `x >= threshold` goes right, a NaN goes to the
 * node's default side; leaves summed in float32 from the base margin, tree by tree (the order
 * of NumPy's cumsum there). No NumPy headers: every array arrives through the buffer protocol,
 * so the module builds with a C compiler and Python's headers alone. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* One inner node: its feature in the low 31 bits, "a missing value goes right" in the top bit, and
 * its threshold; each tree's nodes in heap order (children of i at 2i+1, 2i+2), so the first
 * levels of a tree share cache lines and a row touches about one line per level per tree. */
typedef struct {
    uint32_t feature;
    float threshold;
} Node;

/* One row through every tree: the margin, or with the sigmoid applied. The trees are walked
 * GROUP at a time, level by level: one tree's path is a chain of dependent loads (node, then the
 * row's value, then the next node), so walking one tree after another waits on each load in turn,
 * while GROUP independent chains overlap in the CPU (about 2.5x faster for one row here). The
 * leaves are still added one tree at a time in tree order: the same float32 sum. */
#define GROUP 8
/* ``finite``: the row holds no NaN (csv_parse refuses one), so no node's default side is looked
 * at; a constant at each call, so the compiler makes the two walks without a test per node. */
static inline __attribute__((always_inline)) float walk_rows(const float *row, const Node *all,
                                                             const float *leaves, int depth, int n_trees,
                                                             Py_ssize_t inner, float base, int sigmoid,
                                                             const int finite) {
    float acc = base;
    Py_ssize_t t = 0;
    for (; t + GROUP <= n_trees; t += GROUP) {
        const Node *tree = all + t * inner;
        Py_ssize_t pos[GROUP] = {0};
        for (int l = 0; l < depth; l++) {
#pragma GCC unroll 8 /* GROUP: so each chain's position stays in a register */
            for (int g = 0; g < GROUP; g++) {
                Node node = tree[g * inner + pos[g]];
                float v = row[node.feature & 0x7fffffffu];
                int right = (!finite && v != v) ? (int)(node.feature >> 31) : (v >= node.threshold);
                pos[g] = 2 * pos[g] + 1 + right;
            }
        }
#pragma GCC unroll 8
        for (int g = 0; g < GROUP; g++) acc += leaves[((t + g) << depth) + (pos[g] - inner)];
    }
    for (; t < n_trees; t++) {
        const Node *tree = all + t * inner;
        Py_ssize_t pos = 0;
        for (int l = 0; l < depth; l++) {
            Node node = tree[pos];
            float v = row[node.feature & 0x7fffffffu];
            int right = (!finite && v != v) ? (int)(node.feature >> 31) : (v >= node.threshold);
            pos = 2 * pos + 1 + right;
        }
        acc += leaves[((Py_ssize_t)t << depth) + (pos - inner)];
    }
    if (sigmoid) {  /* XGBoost's common::Sigmoid, in float32 with libm's expf */
        float e = expf(fminf(-acc, 88.7f));
        acc = 1.0f / (e + 1.0f + 1e-16f);
    }
    return acc;
}

static float walk(const float *row, const Node *all, const float *leaves, int depth, int n_trees,
                  Py_ssize_t inner, float base, int sigmoid) {
    return walk_rows(row, all, leaves, depth, n_trees, inner, base, sigmoid, 0);
}

static float walk_finite(const float *row, const Node *all, const float *leaves, int depth, int n_trees,
                         Py_ssize_t inner, float base, int sigmoid) {
    return walk_rows(row, all, leaves, depth, n_trees, inner, base, sigmoid, 1);
}

/* Whether a buffer's values can be read through a pointer of their type: a misaligned read is
 * undefined in C. NumPy arrays, array.array and bytes are aligned; a view at an odd offset is not. */
static int aligned(const Py_buffer *view, size_t alignment) {
    return (uintptr_t)view->buf % alignment == 0;
}

/* Whether a forest's arrays have the sizes its depth and tree count say; the depth is checked before
 * it is used as a shift. */
static int forest_fits(int depth, int n_trees, int n_features, const Py_buffer *nodes, const Py_buffer *leaf) {
    if (depth < 1 || depth > 20 || n_trees < 1 || n_features < 1) return 0;
    Py_ssize_t inner = ((Py_ssize_t)1 << depth) - 1;
    return nodes->len == (Py_ssize_t)n_trees * inner * (Py_ssize_t)sizeof(Node)
           && leaf->len == ((Py_ssize_t)n_trees << depth) * (Py_ssize_t)sizeof(float);
}

static int forest_aligned(const Py_buffer *nodes, const Py_buffer *leaf) {
    return aligned(nodes, _Alignof(Node)) && aligned(leaf, _Alignof(float));
}

static PyObject *margin(PyObject *self, PyObject *args) {
    Py_buffer x, nodes, leaf, out;
    int depth, n_trees, n_features, sigmoid;
    float base;
    if (!PyArg_ParseTuple(args, "y*y*y*iiifpw*", &x, &nodes, &leaf, &depth, &n_trees, &n_features, &base,
                          &sigmoid, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t rows = n_features > 0 ? x.len / ((Py_ssize_t)sizeof(float) * n_features) : 0;
    if (!forest_fits(depth, n_trees, n_features, &nodes, &leaf)
        || x.len != rows * (Py_ssize_t)sizeof(float) * n_features || out.len != rows * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "forest arrays do not match their shapes");
        goto done;
    }
    if (!forest_aligned(&nodes, &leaf) || !aligned(&x, _Alignof(float)) || !aligned(&out, _Alignof(float))) {
        PyErr_SetString(PyExc_ValueError, "forest arrays must be aligned for their float32 values");
        goto done;
    }
    Py_ssize_t inner = ((Py_ssize_t)1 << depth) - 1;
    /* Every feature index is inside the row: compile_model refuses a forest where one is not. */
    const float *xs = (const float *)x.buf, *leaves = (const float *)leaf.buf;
    const Node *all = (const Node *)nodes.buf;
    float *o = (float *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) o[r] = walk(xs + r * n_features, all, leaves, depth, n_trees, inner,
                                                      base, sigmoid);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&x);
    PyBuffer_Release(&nodes);
    PyBuffer_Release(&leaf);
    PyBuffer_Release(&out);
    return result;
}

/* Exact powers of ten a double holds (10**22 is the last). */
static const double POW10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* The double nearest a decimal written with at most 15 significant digits and a power of ten a
 * double holds exactly: one correctly rounded multiplication or division of two exact doubles
 * (Clinger's fast path), so the same double Python's float() finds. 0 when the field is not a
 * plain decimal (the grammar of float(): sign, digits, point, exponent) or not this simple. */
static int fast_decimal(const char *s, const char *end, double *out) {
    const char *c = s;
    int negative = 0;
    if (c < end && (*c == '+' || *c == '-')) negative = *c++ == '-';
    uint64_t mantissa = 0;
    int digits = 0, seen = 0, scale = 0;
    for (; c < end && *c >= '0' && *c <= '9'; c++, seen++) {
        if (mantissa == 0 && *c == '0') continue;  /* leading zeros are not significant */
        if (++digits > 15) return 0;
        mantissa = mantissa * 10 + (uint64_t)(*c - '0');
    }
    if (c < end && *c == '.') {
        for (c++; c < end && *c >= '0' && *c <= '9'; c++, seen++) {
            scale--;
            if (mantissa == 0 && *c == '0') continue;
            if (++digits > 15) return 0;
            mantissa = mantissa * 10 + (uint64_t)(*c - '0');
        }
    }
    if (seen == 0) return 0;
    if (c < end && (*c == 'e' || *c == 'E')) {
        c++;
        int minus = 0, exp = 0, exp_digits = 0;
        if (c < end && (*c == '+' || *c == '-')) minus = *c++ == '-';
        for (; c < end && *c >= '0' && *c <= '9'; c++, exp_digits++) {
            if (exp > 1000) return 0;
            exp = exp * 10 + (*c - '0');
        }
        if (exp_digits == 0) return 0;
        scale += minus ? -exp : exp;
    }
    if (c != end || scale < -22 || scale > 22) return 0;
    double d = (double)mantissa;  /* exact: below 2**53 */
    d = scale < 0 ? d / POW10[-scale] : d * POW10[scale];
    *out = negative ? -d : d;
    return 1;
}

/* One field of a plain CSV number: the characters a decimal float is written with, read as
 * Python's own correctly rounded conversion reads them (what float() and NumPy's string cast
 * call), then rounded to float32 as NumPy's cast does. Anything else (spaces, quotes, nan, inf,
 * 1_0, a value float32 cannot hold) is refused, so the caller's general decoder answers it as it
 * always has. */
static int csv_number(const char *s, const char *end, float *value) {
    if (s == end || end - s > 64) return 0;
    double d;
    if (!fast_decimal(s, end, &d)) {
        for (const char *c = s; c < end; c++) {
            char ch = *c;
            if (!((ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '+' || ch == 'e' || ch == 'E'))
                return 0;
        }
        char buf[65];
        memcpy(buf, s, (size_t)(end - s));
        buf[end - s] = 0;
        char *stop = NULL;
        d = PyOS_string_to_double(buf, &stop, NULL);
        if (d == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        if (stop != buf + (end - s)) return 0;
    }
    float f = (float)d;
    if (!isfinite(f)) return 0;
    *value = f;
    return 1;
}

/* The usual field, read in one pass: a plain decimal of at most 15 significant digits and 64
 * characters, its power of ten one a double holds exactly, followed by a delimiter (',', '\n',
 * '\r') or the end. *stop is then that delimiter and *value what fast_decimal and csv_number
 * give for the field; 0 for any other field, which csv_parse reads the long way (the same
 * value, or the same refusal), so this only saves the second pass over the common field. */
static inline int plain_field(const char *s, const char *end, const char **stop, float *value) {
    const char *c = s;
    int negative = 0;
    if (c < end && (*c == '+' || *c == '-')) negative = *c++ == '-';
    const char *first = c;
    while (c < end && *c == '0') c++;  /* leading zeros are not significant */
    uint64_t mantissa = 0;
    const char *digit = c;
    while (c < end && (unsigned)(*c - '0') <= 9) mantissa = mantissa * 10 + (uint64_t)(*c++ - '0');
    Py_ssize_t digits = c - digit, seen = c - first;
    int scale = 0;
    if (c < end && *c == '.') {
        const char *point = ++c;
        if (mantissa == 0)
            while (c < end && *c == '0') c++;
        digit = c;
        while (c < end && (unsigned)(*c - '0') <= 9) mantissa = mantissa * 10 + (uint64_t)(*c++ - '0');
        digits += c - digit;
        seen += c - point;
        scale = -(int)(c - point);
    }
    if (seen == 0 || digits > 15 || scale < -22 || c - s > 64) return 0;
    if (c < end && *c != ',' && *c != '\n' && *c != '\r') return 0;  /* an exponent, a space: the long way */
    double d = (double)mantissa;  /* exact: below 2**53 */
    d = scale < 0 ? d / POW10[-scale] : d;
    float f = (float)(negative ? -d : d);
    if (!isfinite(f)) return 0;
    *value = f;
    *stop = c;
    return 1;
}

/* Rows of plain numeric CSV (\n or \r\n line ends, trailing ones allowed), n_features per row,
 * at most max_rows of them, into a new float32 buffer (*xs, freed with PyMem_Free): 1 when read,
 * 0 when the body is anything else, -1 with an exception set when memory ran out. */
static int csv_parse(const char *p, Py_ssize_t len, int n_features, int max_rows, float **xs,
                     Py_ssize_t *n_rows) {
    const char *end = p + len;
    while (end > p && end[-1] == '\n') {
        end--;
        if (end > p && end[-1] == '\r') end--;
    }
    Py_ssize_t rows = 0;
    if (end > p) {
        rows = 1;
        for (const char *c = p; (c = memchr(c, '\n', (size_t)(end - c))) != NULL; c++) rows++;
    }
    if (rows < 1 || rows > max_rows || n_features < 1) return 0;
    /* A row of n_features fields is at least 2 * n_features - 1 bytes (one-digit fields, single
     * commas) plus its newline: a body too short for the rows its newlines promise is not plain
     * CSV, and is refused before the rows are allocated, so the allocation stays within twice the
     * body whatever the model's width. */
    if (rows > (end - p + 1) / (2 * (Py_ssize_t)n_features)) return 0;
    float *out = PyMem_Malloc((size_t)rows * (size_t)n_features * sizeof(float));
    if (out == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t r = 0; r < rows; r++) {
        for (int f = 0; f < n_features; f++) {
            const char *q;
            float *value = out + r * n_features + f;
            if (!plain_field(p, end, &q, value)) {  /* the rare field: delimited, then read in full */
                q = p;
                while (q < end && *q != ',' && *q != '\n' && *q != '\r') q++;
                if (!csv_number(p, q, value)) goto refuse;
            }
            if (f < n_features - 1) {
                if (q == end || *q != ',') goto refuse;
                p = q + 1;
            } else if (q == end) {
                p = q;
            } else if (*q == '\n') {
                p = q + 1;
            } else if (*q == '\r' && q + 1 < end && q[1] == '\n') {
                p = q + 2;
            } else {
                goto refuse;
            }
        }
    }
    if (p != end) goto refuse;
    *xs = out;
    *n_rows = rows;
    return 1;
refuse:
    PyMem_Free(out);
    return 0;
}

/* csv_parse's rows as bytes of float32 values (what score_csv walks), or None. */
static PyObject *csv_rows(PyObject *self, PyObject *args) {
    Py_buffer body;
    int n_features, max_rows;
    if (!PyArg_ParseTuple(args, "y*ii", &body, &n_features, &max_rows)) return NULL;
    float *xs = NULL;
    Py_ssize_t rows = 0;
    PyObject *result = NULL;
    int read = csv_parse((const char *)body.buf, body.len, n_features, max_rows, &xs, &rows);
    if (read > 0) {
        result = PyBytes_FromStringAndSize((const char *)xs, rows * n_features * (Py_ssize_t)sizeof(float));
    } else if (read == 0) {
        result = Py_None;
        Py_INCREF(result);
    }
    PyMem_Free(xs);
    PyBuffer_Release(&body);
    return result;
}

/* A plain numeric CSV body scored in one call (no arrays made on the way): a list of floats, one
 * per row, or None when csv_parse refuses the body. */
static PyObject *score_csv(PyObject *self, PyObject *args) {
    Py_buffer body, nodes, leaf;
    int depth, n_trees, n_features, sigmoid, max_rows;
    float base;
    if (!PyArg_ParseTuple(args, "y*y*y*iiifpi", &body, &nodes, &leaf, &depth, &n_trees, &n_features, &base,
                          &sigmoid, &max_rows))
        return NULL;
    PyObject *result = NULL;
    float *xs = NULL;
    Py_ssize_t rows = 0;
    if (!forest_fits(depth, n_trees, n_features, &nodes, &leaf)) {
        PyErr_SetString(PyExc_ValueError, "forest arrays do not match their shapes");
        goto done;
    }
    if (!forest_aligned(&nodes, &leaf)) {
        PyErr_SetString(PyExc_ValueError, "forest arrays must be aligned for their float32 values");
        goto done;
    }
    Py_ssize_t inner = ((Py_ssize_t)1 << depth) - 1;
    int read = csv_parse((const char *)body.buf, body.len, n_features, max_rows, &xs, &rows);
    if (read < 0) goto done;
    if (read == 0) {
        result = Py_None;
        Py_INCREF(result);
        goto done;
    }
    const float *leaves = (const float *)leaf.buf;
    const Node *all = (const Node *)nodes.buf;
    result = PyList_New(rows);
    if (result == NULL) goto done;
    for (Py_ssize_t r = 0; r < rows; r++) {
        PyObject *v = PyFloat_FromDouble(
            (double)walk_finite(xs + r * n_features, all, leaves, depth, n_trees, inner, base, sigmoid));
        if (v == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, r, v);
    }
done:
    PyMem_Free(xs);
    PyBuffer_Release(&body);
    PyBuffer_Release(&nodes);
    PyBuffer_Release(&leaf);
    return result;
}

/* Row building for a featuriser that writes float32 rows from Python (modelformat.gender.record_rows):
 * the two loops of a row that cost most there, one call each. ``out`` is a writable, contiguous and
 * aligned buffer of float32 (an array('f'), a NumPy array), ``start`` the offset of the row in it. */
static int f32_buffer(PyObject *obj, Py_buffer *view) {
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "f") != 0) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_TypeError, "out must be a writable buffer of float32");
        return -1;
    }
    if (!aligned(view, _Alignof(float))) {
        PyBuffer_Release(view);
        PyErr_SetString(PyExc_ValueError, "out must be aligned for its float32 values");
        return -1;
    }
    return 0;
}

/* put_dense(out, start, raw, mean, std): out[start + j] = ((raw[j] if not NaN else mean[j]) - mean[j]) /
 * std[j] in double (the float64 operations of NumPy's scaling, in its order), then as float32 (C's cast,
 * as array('f') rounds), and NaN where that is 0: a sparse matrix stores no zeros, and XGBoost reads an
 * entry it does not store as missing. ``raw``: a list of floats; ``mean``, ``std``: buffers of float64
 * (array('d')) as long. */
static PyObject *put_dense(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyList_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "put_dense(out, start, raw: list of float, mean, std)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]), n = PyList_GET_SIZE(args[2]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    Py_buffer out, mean, std;
    if (f32_buffer(args[0], &out) < 0) return NULL;
    if (PyObject_GetBuffer(args[3], &mean, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&out);
        return NULL;
    }
    if (PyObject_GetBuffer(args[4], &std, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&mean);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t size = out.len / 4;
    /* start + n may not be computed: a start near PY_SSIZE_T_MAX wraps it round below size */
    if (start < 0 || n > size || start > size - n || mean.len != n * (Py_ssize_t)sizeof(double)
        || std.len != n * (Py_ssize_t)sizeof(double)) {
        PyErr_SetString(PyExc_ValueError, "put_dense: raw, mean and std differ in length or run past out");
        goto done;
    }
    if (!aligned(&mean, _Alignof(double)) || !aligned(&std, _Alignof(double))) {
        PyErr_SetString(PyExc_ValueError, "put_dense: mean and std must be aligned for their float64 values");
        goto done;
    }
    float *o = (float *)out.buf + start;
    const double *m = (const double *)mean.buf, *d = (const double *)std.buf;
    for (Py_ssize_t j = 0; j < n; j++) {
        PyObject *item = PyList_GET_ITEM(args[2], j);
        if (!PyFloat_CheckExact(item)) {  /* nothing that runs Python code while the list is read */
            PyErr_SetString(PyExc_TypeError, "put_dense raw values must be floats");
            goto done;
        }
        double v = PyFloat_AS_DOUBLE(item);
        float f = (float)(((v != v ? m[j] : v) - m[j]) / d[j]);
        o[j] = f == 0.0f ? NAN : f;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&out);
    PyBuffer_Release(&mean);
    PyBuffer_Release(&std);
    return result;
}

/* mark(out, start, positions, values) -> int: out[start + positions[v]] = 1.0 for each value of the
 * list that is a str and a key of the dict ``positions``; the number of values that were not str
 * (the caller looks those up as str(value), the spelling the featuriser's vocabulary has). */
static PyObject *mark(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyDict_CheckExact(args[2]) || !PyList_CheckExact(args[3])) {
        PyErr_SetString(PyExc_TypeError, "mark(out, start, positions: dict, values: list)");
        return NULL;
    }
    Py_ssize_t start = PyLong_AsSsize_t(args[1]);
    if (start == -1 && PyErr_Occurred()) return NULL;
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "mark: start must not be negative");
        return NULL;
    }
    Py_buffer out;
    if (f32_buffer(args[0], &out) < 0) return NULL;
    PyObject *result = NULL, *values = args[3];
    Py_ssize_t size = out.len / 4, others = 0;
    float *o = (float *)out.buf;
    for (Py_ssize_t j = 0; j < PyList_GET_SIZE(values); j++) {
        PyObject *item = PyList_GET_ITEM(values, j);
        if (!PyUnicode_CheckExact(item)) {  /* an exact str hashes and compares without Python code */
            others++;
            continue;
        }
        /* held: a key of another type in the dict may compare with it in Python code, which could
         * drop the list's reference */
        Py_INCREF(item);
        PyObject *position = PyDict_GetItemWithError(args[2], item);
        Py_DECREF(item);
        if (position == NULL) {
            if (PyErr_Occurred()) goto done;
            continue;
        }
        if (!PyLong_CheckExact(position)) {  /* an int subclass's __index__ would run Python code */
            PyErr_SetString(PyExc_TypeError, "mark: positions must be ints");
            goto done;
        }
        Py_ssize_t p = PyLong_AsSsize_t(position);
        if (p == -1 && PyErr_Occurred()) goto done;
        if (p < 0 || p >= size - start) {  /* not start + p: that may wrap round below size */
            PyErr_SetString(PyExc_ValueError, "a position runs past the end of out");
            goto done;
        }
        o[start + p] = 1.0f;
    }
    result = PyLong_FromSsize_t(others);
done:
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"csv_rows", csv_rows, METH_VARARGS, "csv_rows(body, n_features, max_rows)"},
    {"put_dense", (PyCFunction)(void (*)(void))put_dense, METH_FASTCALL, "put_dense(out, start, raw, mean, std)"},
    {"mark", (PyCFunction)(void (*)(void))mark, METH_FASTCALL, "mark(out, start, positions, values) -> int"},
    {"score_csv", score_csv, METH_VARARGS,
     "score_csv(body, nodes, leaf, depth, n_trees, n_features, base, sigmoid, max_rows)"},
    {"margin", margin, METH_VARARGS,
     "margin(x, nodes, leaf, depth, n_trees, n_features, base, sigmoid, out)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_forest", NULL, -1, methods};

PyMODINIT_FUNC PyInit__forest(void) { return PyModule_Create(&module); }
