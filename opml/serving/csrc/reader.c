/* The record reader of opml.serving.reader: a batch of JSON records read into a column matrix in one
   pass through the CPython API. Built by opml.serving.cbuild against Python.h and loaded with
   ctypes.PyDLL (the GIL stays held while it reads the borrowed objects). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>

/* records: a list; names: a tuple of str (schema order); kinds[j]: 0 numeric, 1 categorical; lookups: a
   tuple holding, per categorical column, a dict str -> int code (None for numeric columns).
   out[j * n + i] = column j of record i: a number (NaN for null), or a category code (-1: null or unseen).
   Returns -1 when every record is a dict with exactly the schema's keys and values of the right kinds
   (numeric: int, float or null; categorical: str or null), else the index of the first record that is not. */
Py_ssize_t opml_read_records(PyObject *records, PyObject *names, const int32_t *kinds, PyObject *lookups,
                             double *out) {
    const Py_ssize_t n = PyList_GET_SIZE(records), m = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; ++i) {
        /* a key's __eq__ could run Python code (never for parsed JSON, whose keys are plain str): hold the
           record, and stop if the list shrank under us */
        if (i >= PyList_GET_SIZE(records)) return i;
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyDict_CheckExact(rec) || PyDict_GET_SIZE(rec) != m) return i;
        Py_INCREF(rec);
        Py_ssize_t bad = -1;
        for (Py_ssize_t j = 0; j < m && bad < 0; ++j) {
            PyObject *v = PyDict_GetItemWithError(rec, PyTuple_GET_ITEM(names, j));
            double *o = out + j * n + i;
            if (v == NULL) { PyErr_Clear(); bad = i; }
            else if (kinds[j] == 0) {
                if (v == Py_None) *o = NAN;
                else if (PyFloat_CheckExact(v)) *o = PyFloat_AS_DOUBLE(v);
                else if (PyLong_CheckExact(v)) {
                    double d = PyLong_AsDouble(v);
                    if (d == -1.0 && PyErr_Occurred()) { PyErr_Clear(); bad = i; }
                    else *o = d;
                } else bad = i;
            } else {
                if (v == Py_None) *o = -1.0;
                else if (PyUnicode_CheckExact(v)) {
                    PyObject *code = PyDict_GetItemWithError(PyTuple_GET_ITEM(lookups, j), v);
                    if (code == NULL) {
                        if (PyErr_Occurred()) { PyErr_Clear(); bad = i; }
                        else *o = -1.0;
                    } else *o = (double)PyLong_AsLong(code);
                } else bad = i;
            }
        }
        Py_DECREF(rec);
        if (bad >= 0) return bad;
    }
    return -1;
}
