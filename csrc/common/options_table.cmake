# acb_generate_options_table(JSON OUT): writes the C++ table of csrc/common/options.json
# (a constexpr std::array<acb::options::Option, N> named kOptions) to OUT, and
# re-runs the configure step when the JSON changes.
function(acb_generate_options_table json out)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${json})
  file(READ ${json} text)
  string(JSON count LENGTH "${text}" options)
  math(EXPR last "${count} - 1")
  set(body "")
  foreach(i RANGE ${last})
    set(row "")
    foreach(field name env type default doc)
      string(JSON v GET "${text}" options ${i} ${field})
      string(REPLACE "\\" "\\\\" v "${v}")
      string(REPLACE "\"" "\\\"" v "${v}")
      string(APPEND row "\"${v}\", ")
    endforeach()
    string(APPEND body "    Option{${row}},\n")
  endforeach()
  file(CONFIGURE OUTPUT ${out} CONTENT
"// Generated from csrc/common/options.json by options_table.cmake; do not edit.
#pragma once
namespace acb::options {
inline constexpr std::array<Option, ${count}> kOptions{{
${body}}};
}  // namespace acb::options
" @ONLY)
endfunction()
