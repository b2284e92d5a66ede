# lit configuration of the dsv3 test suite (dialect, passes, import, tools).
import os

import lit.formats
from lit.llvm import llvm_config

config.name = "DSV3"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["Inputs", "data", "CMakeLists.txt", "lit.cfg.py",
                   "lit.site.cfg.py", "README.md"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.dsv3_obj_root, "test")

# Variables captured in one CHECK-LABEL block never leak into the next.
config.environment["FILECHECK_OPTS"] = "--enable-var-scope"

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)

tool_dirs = [config.dsv3_tools_dir, config.llvm_tools_dir]
tools = ["dsv3-opt", "dsv3c", "dsv3-run", "FileCheck", "not", "split-file", "count"]
llvm_config.add_tool_substitutions(tools, tool_dirs)

config.substitutions.append(
    ("%fixtures", os.path.join(config.dsv3_src_root, "test", "data", "fixtures")))
config.substitutions.append(
    ("%presets", os.path.join(config.dsv3_src_root, "models", "presets")))
config.substitutions.append(("%srcroot", config.dsv3_src_root))
config.substitutions.append(("%dsv3_bin", config.dsv3_tools_dir))
if getattr(config, "dsv3_have_nvrtc", False):
    config.available_features.add("nvrtc")
config.substitutions.append(("%objroot", config.dsv3_obj_root))
