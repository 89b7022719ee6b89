// Attaching the Python threads that already run when acb is enabled.
//
// The op hook's key is thread-local dispatch state (op_hook.h), so a thread
// can only attach itself. New threading.Thread threads do so from a
// threading.setprofile function (python/acb/_threads.py); a thread that
// already runs never reads that again. For each of them this installs a C
// profile function on its thread state (_PyEval_SetProfile, the
// per-thread-state form of sys.setprofile): at the thread's next profile
// event, which CPython raises before every call of a Python function and of a
// builtin or method descriptor (a tensor method, a torch function), so before
// the thread's next operator issued from Python, it attaches the thread, puts
// back the profile function the thread had (e.g. cProfile's) and passes the
// event on to it.
//
// Limits: a thread that stays inside C++ (one long call issuing many
// operators) is attached only when it next returns to Python. Supported on
// CPython 3.11 and 3.12, whose thread states carry c_profilefunc/c_profileobj
// and whose cpython/ceval.h declares _PyEval_SetProfile (3.12's own
// PyEval_SetProfileAllThreads is built on it; 3.13 moved it to the internal
// headers); elsewhere attach_existing_python_threads() reports that it
// cannot (the caller then puts the process in a safe mode).
//
// Thread-safety: call with the GIL held (thread states are then not created
// or destroyed under the walk, as in CPython's own PyEval_SetProfileAllThreads).
#pragma once

namespace acb::torch_hook {

/// Installs the attaching profile function on every thread state of this
/// interpreter except the caller's. Returns how many threads will attach;
/// -1 when this Python cannot do it (no thread is changed then), or -1 with
/// a Python error set when CPython refused (an audit hook, no memory).
int attach_existing_python_threads();

/// The number of thread states of this interpreter other than the caller's.
int other_python_threads();

}  // namespace acb::torch_hook
