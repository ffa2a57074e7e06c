package todo

// Translate exposes translate so tests can feed it real driver errors.
var Translate = translate
