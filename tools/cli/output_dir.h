// The output folder, written atomically: everything goes into OUTPUT.tmp-<pid> beside OUTPUT,
// which is fsync'ed and renamed to OUTPUT at the end. SIGINT/SIGTERM/SIGHUP remove the
// temporary folder before the process dies; a SIGKILL leaves it (clearly named), and the next run
// for the same OUTPUT removes temporaries whose process is gone.
#pragma once

#include <string>

namespace quanto::cli {

// Refuses OUTPUT equal to, inside, or containing INPUT's model folder (or the input file);
// refuses an existing OUTPUT unless `force`. Throws CliError.
void check_output_path(const std::string& input, bool input_is_folder, const std::string& output, bool force);

class OutputDir {
 public:
  explicit OutputDir(std::string output);  // creates the temporary folder; installs the signal handlers
  OutputDir(const OutputDir&) = delete;
  OutputDir& operator=(const OutputDir&) = delete;
  ~OutputDir();                            // removes the temporary folder unless committed

  const std::string& temp() const { return temp_; }
  // fsyncs the temporary folder, renames it to OUTPUT (an existing OUTPUT is moved aside first and
  // removed after: only with --force, checked earlier), fsyncs the parent.
  void commit();

 private:
  std::string output_;
  std::string temp_;
  bool committed_ = false;
};

}  // namespace quanto::cli
