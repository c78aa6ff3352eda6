/* The walk of modelformat.forest.Forest.margin in C, for the batches of a few rows where the
 * NumPy walk's two dozen array calls cost more than the 1,200 comparisons they make.
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

/* One inner node: its feature in the low 31 bits, "a missing value goes right" in the top bit, and
 * its threshold; each tree's nodes in heap order (children of i at 2i+1, 2i+2), so the first
 * levels of a tree share cache lines and a row touches about one line per level per tree. */
typedef struct {
    uint32_t feature;
    float threshold;
} Node;

static PyObject *margin(PyObject *self, PyObject *args) {
    Py_buffer x, nodes, leaf, out;
    int depth, n_trees, n_features, sigmoid;
    float base;
    if (!PyArg_ParseTuple(args, "y*y*y*iiifpw*", &x, &nodes, &leaf, &depth, &n_trees, &n_features, &base,
                          &sigmoid, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t inner = ((Py_ssize_t)1 << depth) - 1;
    Py_ssize_t rows = n_features > 0 ? x.len / ((Py_ssize_t)sizeof(float) * n_features) : 0;
    if (depth < 1 || depth > 20 || n_trees < 1 || n_features < 1
        || x.len != rows * (Py_ssize_t)sizeof(float) * n_features
        || nodes.len != (Py_ssize_t)n_trees * inner * (Py_ssize_t)sizeof(Node)
        || leaf.len != ((Py_ssize_t)n_trees << depth) * (Py_ssize_t)sizeof(float)
        || out.len != rows * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "forest arrays do not match their shapes");
        goto done;
    }
    /* Every feature index is inside the row: compile_model refuses a forest where one is not. */
    const float *xs = (const float *)x.buf, *leaves = (const float *)leaf.buf;
    const Node *all = (const Node *)nodes.buf;
    float *o = (float *)out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t r = 0; r < rows; r++) {
        const float *row = xs + r * n_features;
        float acc = base;
        for (Py_ssize_t t = 0; t < n_trees; t++) {
            const Node *tree = all + t * inner;
            Py_ssize_t pos = 0;
            for (int l = 0; l < depth; l++) {
                Node node = tree[pos];
                float v = row[node.feature & 0x7fffffffu];
                int right = (v != v) ? (int)(node.feature >> 31) : (v >= node.threshold);
                pos = 2 * pos + 1 + right;
            }
            acc += leaves[(t << depth) + (pos - inner)];
        }
        if (sigmoid) {  /* XGBoost's common::Sigmoid, in float32 with libm's expf */
            float e = expf(fminf(-acc, 88.7f));
            acc = 1.0f / (e + 1.0f + 1e-16f);
        }
        o[r] = acc;
    }
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

static PyMethodDef methods[] = {
    {"margin", margin, METH_VARARGS,
     "margin(x, nodes, leaf, depth, n_trees, n_features, base, sigmoid, out)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_forest", NULL, -1, methods};

PyMODINIT_FUNC PyInit__forest(void) { return PyModule_Create(&module); }
