// Attaching already-running Python threads (see python_threads.h).
#include "torch/python_threads.h"

#include <Python.h>
#include <frameobject.h>

#include "torch/op_hook.h"

namespace acb::torch_hook {

namespace {
#if PY_VERSION_HEX < 0x030D0000
constexpr const char* kCapsuleName = "acb.previous_profile";

/// The profile function a thread had before ours, owned by our profile object.
struct PreviousProfile {
  Py_tracefunc func;
  PyObject* obj;  // owned reference, or null
};

void free_previous(PyObject* capsule) {
  auto* previous = static_cast<PreviousProfile*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (previous == nullptr) return;
  Py_XDECREF(previous->obj);
  delete previous;
}

int attach_on_next_event(PyObject* obj, PyFrameObject* frame, int what, PyObject* arg) {
  auto* previous = static_cast<PreviousProfile*>(PyCapsule_GetPointer(obj, kCapsuleName));
  if (previous == nullptr) return -1;
  const Py_tracefunc func = previous->func;
  PyObject* previous_obj = previous->obj;
  Py_XINCREF(previous_obj);  // putting it back below frees our capsule, and `previous` with it
  attach_current_thread();
  int rc = _PyEval_SetProfile(PyThreadState_Get(), func, previous_obj);
  if (rc == 0 && func != nullptr) rc = func(previous_obj, frame, what, arg);
  Py_XDECREF(previous_obj);
  return rc;
}
#endif
}  // namespace

int other_python_threads() {
  PyThreadState* self = PyThreadState_Get();
  int count = 0;
  for (PyThreadState* t = PyInterpreterState_ThreadHead(PyThreadState_GetInterpreter(self)); t != nullptr;
       t = PyThreadState_Next(t)) {
    if (t != self) ++count;
  }
  return count;
}

int attach_existing_python_threads() {
#if PY_VERSION_HEX < 0x030D0000
  PyThreadState* self = PyThreadState_Get();
  int count = 0;
  for (PyThreadState* t = PyInterpreterState_ThreadHead(self->interp); t != nullptr; t = PyThreadState_Next(t)) {
    if (t == self || t->c_profilefunc == &attach_on_next_event) continue;
    auto* previous = new PreviousProfile{t->c_profilefunc, t->c_profileobj};
    Py_XINCREF(previous->obj);
    PyObject* capsule = PyCapsule_New(previous, kCapsuleName, &free_previous);
    if (capsule == nullptr) {
      Py_XDECREF(previous->obj);
      delete previous;
      return -1;
    }
    const int rc = _PyEval_SetProfile(t, &attach_on_next_event, capsule);
    Py_DECREF(capsule);  // the thread state holds it now (or it failed and is gone)
    if (rc < 0) return -1;
    ++count;
  }
  return count;
#else
  return -1;
#endif
}

}  // namespace acb::torch_hook
