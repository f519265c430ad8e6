// Runs a module of the quanto Python package as a child process. The exporters to other engines'
// formats (compressed-tensors, GGUF) live in Python because those formats' own writers and
// checkers are Python packages (gguf, compressed-tensors); the CLI forwards to them.
#pragma once

#include <string>
#include <vector>

namespace quanto::cli {

// The interpreter: $QUANTO_PYTHON, else the python3 beside this executable (a pip install puts
// `quanto` in the environment's bin/, next to its python3), else python3 on PATH.
std::string python_interpreter();

// `python -m <module> args...` with stdio inherited; returns its exit status (1 when it could not
// run or died from a signal, with a message on stderr). A missing quanto package is reported as
// such, naming the interpreter.
int run_python_module(const std::string& module, const std::vector<std::string>& args);

}  // namespace quanto::cli
