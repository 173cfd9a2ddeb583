/* The rows of a MySQL text-protocol result set, rendered from the wire as a JSON array.
 *
 * The compiled twin of gateway.wirejson.json_rows_py (the tested reference, used when this
 * module is not built): the same input, the same answer, byte for byte. One pass over the
 * answer to one COM_QUERY as peeked from the socket: the column definitions, their EOF, the
 * rows and the final EOF. Integers and DECIMAL digits are copied as they came, text is
 * checked as UTF-8 and escaped as orjson escapes it, NULL is null. Any other shape (a column
 * of another kind, binary text, an answer not all there, an error after rows, more results,
 * a value the rules below do not take) gives None, and the caller reads the answer the usual
 * way (the driver, the exact-value model). Pure: no I/O, no Python object per value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define K_NUMBER 1
#define K_TEXT 2
#define MAX_COLUMNS 4096
#define ZEROFILL_FLAG 0x40
#define MORE_RESULTS 0x0008
#define BINARY_CHARSET 63

typedef struct {
    char *data;
    size_t len;
    size_t cap;
} Out;

static int out_grow(Out *o, size_t more) {
    if (o->len + more <= o->cap) return 0;
    size_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more) cap *= 2;
    char *data = realloc(o->data, cap);
    if (!data) return -1;
    o->data = data;
    o->cap = cap;
    return 0;
}

/* The kind of a column by its type, charset and flags (0: not rendered here). The same
 * table as gateway.wirejson.column_kind. */
static int column_kind(int type, int charset, int flags) {
    switch (type) {
        case 1: case 2: case 3: case 8: case 9: /* TINY SHORT LONG LONGLONG INT24 */
        case 0: case 246:                        /* DECIMAL NEWDECIMAL */
            return (flags & ZEROFILL_FLAG) ? 0 : K_NUMBER;
        case 7: case 10: case 11: case 12: case 13: case 14: /* temporal, YEAR */
            return K_TEXT;
        case 15: case 253: case 254: case 247: case 248: /* VARCHAR VAR_STRING STRING ENUM SET */
        case 249: case 250: case 251: case 252:           /* BLOB types (TEXT when not binary) */
            return charset == BINARY_CHARSET ? 0 : K_TEXT;
        default:
            return 0;
    }
}

/* A length-encoded integer at *pos (within end); -1 when cut, malformed or longer than
 * what is left before end (``is_length``: a byte count), -2 for NULL. */
static int64_t lenenc(const unsigned char *b, Py_ssize_t *pos, Py_ssize_t end, int is_length) {
    Py_ssize_t p = *pos;
    if (p >= end) return -1;
    unsigned char first = b[p];
    if (first < 0xFB) { *pos = p + 1; return first; }
    if (first == 0xFB) { *pos = p + 1; return -2; }
    int size = first == 0xFC ? 2 : first == 0xFD ? 3 : first == 0xFE ? 8 : 0;
    if (!size || p + 1 + size > end) return -1;
    uint64_t v = 0;
    for (int i = size; i >= 1; i--) v = (v << 8) | b[p + i];
    /* A length past what is left of the packet is refused here, so that no caller ever
     * adds it to a position (an 8-byte length near 2^63 would overflow the sum). */
    if (is_length ? v > (uint64_t)(end - (p + 1 + size)) : v > (uint64_t)PY_SSIZE_T_MAX) return -1;
    *pos = p + 1 + size;
    return (int64_t)v;
}

/* A JSON number as the server writes integers and DECIMAL: -?(0|[1-9][0-9]*)(\.[0-9]+)? */
static int is_number(const unsigned char *s, Py_ssize_t n) {
    Py_ssize_t i = 0;
    if (i < n && s[i] == '-') i++;
    if (i >= n) return 0;
    if (s[i] == '0') i++;
    else if (s[i] >= '1' && s[i] <= '9') { while (i < n && s[i] >= '0' && s[i] <= '9') i++; }
    else return 0;
    if (i == n) return 1;
    if (s[i] != '.') return 0;
    i++;
    if (i >= n) return 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') i++;
    return i == n;
}

static const char HEX[] = "0123456789abcdef";

/* Append s as a JSON string; -1 when it is not valid UTF-8 (as Python's strict decoder
 * rules: no overlong forms, no surrogates, nothing past U+10FFFF), -2 out of memory. */
static int append_text(Out *o, const unsigned char *s, Py_ssize_t n) {
    if (out_grow(o, (size_t)n * 6 + 2)) return -2;
    char *w = o->data + o->len;
    *w++ = '"';
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c < 0x80) {
            if (c >= 0x20 && c != '"' && c != '\\') { *w++ = (char)c; i++; continue; }
            *w++ = '\\';
            switch (c) {
                case '"': *w++ = '"'; break;
                case '\\': *w++ = '\\'; break;
                case '\b': *w++ = 'b'; break;
                case '\t': *w++ = 't'; break;
                case '\n': *w++ = 'n'; break;
                case '\f': *w++ = 'f'; break;
                case '\r': *w++ = 'r'; break;
                default:
                    *w++ = 'u'; *w++ = '0'; *w++ = '0';
                    *w++ = HEX[c >> 4]; *w++ = HEX[c & 15];
            }
            i++;
            continue;
        }
        int more;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c == 0xE0) { more = 2; lo = 0xA0; }
        else if (c >= 0xE1 && c <= 0xEC) more = 2;
        else if (c == 0xED) { more = 2; hi = 0x9F; }
        else if (c >= 0xEE && c <= 0xEF) more = 2;
        else if (c == 0xF0) { more = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) more = 3;
        else if (c == 0xF4) { more = 3; hi = 0x8F; }
        else return -1;
        if (i + more >= n) return -1; /* (cut short) */
        if (s[i + 1] < lo || s[i + 1] > hi) return -1;
        for (int k = 2; k <= more; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF) return -1;
        memcpy(w, s + i, (size_t)more + 1);
        w += more + 1;
        i += more + 1;
    }
    *w++ = '"';
    o->len = (size_t)(w - o->data);
    return 0;
}

static PyObject *json_rows(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t max_rows;
    if (!PyArg_ParseTuple(args, "y*n", &view, &max_rows)) return NULL;
    const unsigned char *b = view.buf;
    Py_ssize_t n = view.len;
    Out o = {NULL, 0, 0};
    unsigned char kinds[MAX_COLUMNS];
    PyObject *result = NULL;
    Py_ssize_t pos, end, p;
    int64_t columns;
    Py_ssize_t defs_start, defs_end, count = 0;
    int status;

#define GIVE_UP goto none
    /* the column count */
    if (n < 5) GIVE_UP;
    end = 4 + (b[0] | b[1] << 8 | b[2] << 16);
    if (end > n || (b[0] == 0xFF && b[1] == 0xFF && b[2] == 0xFF)) GIVE_UP;
    if (b[4] == 0x00 || b[4] == 0xFF || b[4] == 0xFB) GIVE_UP;
    p = 4;
    columns = lenenc(b, &p, end, 0);
    /* (MariaDB's metadata caching adds one byte, 1 when the definitions follow) */
    if (columns <= 0 || columns > MAX_COLUMNS || !(p == end || (p == end - 1 && b[p] == 1)))
        GIVE_UP;
    /* the column definitions */
    defs_start = pos = end;
    for (int64_t c = 0; c < columns; c++) {
        if (pos + 4 > n) GIVE_UP;
        Py_ssize_t length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16;
        if (length == 0xFFFFFF) GIVE_UP;
        p = pos + 4;
        end = p + length;
        if (end > n) GIVE_UP;
        for (int f = 0; f < 6; f++) { /* catalog, schema, table, org_table, name, org_name */
            int64_t size = lenenc(b, &p, end, 1);
            if (size < 0 || p + size > end) GIVE_UP;
            p += (Py_ssize_t)size;
        }
        /* MariaDB's extended metadata (a data type plugin's name, a format): empty here */
        if (p + 14 == end && b[p] == 0x00) p++;
        if (p + 13 != end || b[p] != 0x0C) GIVE_UP;
        int charset = b[p + 1] | b[p + 2] << 8;
        int type = b[p + 7];
        int flags = b[p + 8] | b[p + 9] << 8;
        int kind = column_kind(type, charset, flags);
        if (!kind) GIVE_UP;
        kinds[c] = (unsigned char)kind;
        pos = end;
    }
    defs_end = pos;
    /* the EOF after the definitions (the classic protocol) */
    if (pos + 4 > n) GIVE_UP;
    {
        Py_ssize_t length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16;
        if (pos + 4 + length > n || length < 1 || length >= 9 || b[pos + 4] != 0xFE) GIVE_UP;
        pos += 4 + length;
    }
    if (out_grow(&o, 2)) goto nomem;
    o.data[o.len++] = '[';
    /* the rows, then the final EOF */
    for (;;) {
        if (pos + 4 >= n) GIVE_UP;
        Py_ssize_t length = b[pos] | b[pos + 1] << 8 | b[pos + 2] << 16;
        p = pos + 4;
        end = p + length;
        if (end > n || length == 0xFFFFFF) GIVE_UP;
        if (length < 9 && b[p] == 0xFE) {
            if (length < 5) GIVE_UP;
            status = b[p + 3] | b[p + 4] << 8;
            if (status & MORE_RESULTS || end != n) GIVE_UP;
            break;
        }
        if (b[p] == 0xFF) GIVE_UP; /* an error after rows */
        int shown = max_rows < 0 || count < max_rows;
        if (shown) {
            if (out_grow(&o, 2)) goto nomem;
            if (count) o.data[o.len++] = ',';
            o.data[o.len++] = '[';
        }
        for (int64_t c = 0; c < columns; c++) {
            int64_t size = lenenc(b, &p, end, 1);
            if (size == -1 || (size >= 0 && p + size > end)) GIVE_UP;
            if (shown && c) {
                if (out_grow(&o, 1)) goto nomem;
                o.data[o.len++] = ',';
            }
            if (size == -2) {
                if (shown) {
                    if (out_grow(&o, 4)) goto nomem;
                    memcpy(o.data + o.len, "null", 4);
                    o.len += 4;
                }
                continue;
            }
            const unsigned char *v = b + p;
            p += (Py_ssize_t)size;
            if (kinds[c] == K_NUMBER) {
                if (!is_number(v, (Py_ssize_t)size)) GIVE_UP;
                if (shown) {
                    if (out_grow(&o, (size_t)size)) goto nomem;
                    memcpy(o.data + o.len, v, (size_t)size);
                    o.len += (size_t)size;
                }
            } else {
                if (shown) {
                    int r = append_text(&o, v, (Py_ssize_t)size);
                    if (r == -2) goto nomem;
                    if (r) GIVE_UP;
                } else {
                    /* (a row past the limit is still checked: the same verdict either way) */
                    Out scratch = {NULL, 0, 0};
                    int r = append_text(&scratch, v, (Py_ssize_t)size);
                    free(scratch.data);
                    if (r == -2) goto nomem;
                    if (r) GIVE_UP;
                }
            }
        }
        if (p != end) GIVE_UP;
        if (shown) {
            if (out_grow(&o, 1)) goto nomem;
            o.data[o.len++] = ']';
        }
        count++;
        pos = end;
    }
    if (out_grow(&o, 1)) goto nomem;
    o.data[o.len++] = ']';
    result = Py_BuildValue(
        "(nnnny#n)", n, (Py_ssize_t)status, defs_start, defs_end, o.data, (Py_ssize_t)o.len, count
    );
    free(o.data);
    PyBuffer_Release(&view);
    return result;
none:
    free(o.data);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
nomem:
    free(o.data);
    PyBuffer_Release(&view);
    return PyErr_NoMemory();
#undef GIVE_UP
}

static PyMethodDef methods[] = {
    {"json_rows", json_rows, METH_VARARGS,
     "json_rows(answer, max_rows) -> (end, status, defs_start, defs_end, rows_json, count) "
     "or None: see gateway.wirejson.json_rows_py."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "gateway._wirejson",
    "The rows of a text-protocol result set as JSON, from the wire (see gateway.wirejson).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__wirejson(void) { return PyModule_Create(&module); }
